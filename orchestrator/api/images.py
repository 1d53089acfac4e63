"""Images a client sends for the vision-language role, checked before any engine sees them.

A chat ``image_url`` part and a Realtime ``input_image`` part both carry a URL. A ``data:`` URL
(``data:image/png;base64,...``) is decoded here; an ``http(s)`` URL is fetched only when its
host is named in ``[api] allow_image_urls`` (exactly; no redirect followed, the download capped
at ``max_image_bytes`` and ``image_fetch_timeout_s``), so the server never fetches an address a
client picked. Every image is then opened with Pillow: its format must be PNG, JPEG, WebP or
GIF (what OpenAI takes), its size at most ``max_image_pixels`` (read from the header, before
decoding: a small file can claim a huge canvas), and it must decode whole. Each failure is a 4xx
with a stable code:

    code                    status  when
    invalid_image_url       400     not a data: or http(s): URL, or a data URL that is no base64
    image_url_not_allowed   400     an http(s) URL whose host allow_image_urls does not name
    image_fetch_failed      400     the allowed URL answered an error, a redirect, or not in time
    image_too_large         413     more bytes than max_image_bytes
    image_too_many_pixels   413     more pixels than max_image_pixels
    invalid_image           400     not an image Pillow can decode, or not one of the formats
    too_many_images         400     more images in one request than max_images
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from urllib.parse import urlsplit

import httpx

from orchestrator.api.bodies import Message
from orchestrator.api.errors import MAX_JSON_BYTES, BadRequest
from orchestrator.config.models import ApiConfig
from services.vision import Image

FORMATS = frozenset({"png", "jpeg", "webp", "gif"})


class ImageTooLarge(BadRequest):
    """An image over the byte or pixel limit: 413, as an oversized body."""

    status = 413


def base64_size(size: int) -> int:
    """How long ``size`` bytes are in base64."""
    return 4 * ((size + 2) // 3)


def too_many(count: int, limits: ApiConfig, param: str) -> None:
    if count > limits.max_images:
        raise BadRequest(
            f"{count} images in one request; at most {limits.max_images}",
            code="too_many_images",
            param=param,
        )


def chat_body_limit(limits: ApiConfig) -> int:
    """The largest chat body: the JSON bound plus room for ``max_images`` data URLs."""
    return MAX_JSON_BYTES + limits.max_images * (base64_size(limits.max_image_bytes) + 64)


def has_image_parts(messages: list[Message]) -> bool:
    return any(m.image_urls() for m in messages)


async def message_images(messages: list[Message], limits: ApiConfig) -> list[list[Image]]:
    """Each message's images, checked, in order (errors name the part at fault)."""
    wanted = [(i, part, url) for i, m in enumerate(messages) for part, url in m.image_urls()]
    too_many(len(wanted), limits, "messages")
    images: list[list[Image]] = [[] for _ in messages]
    for index, part, url in wanted:
        param = f"messages[{index}].content[{part}].image_url.url"
        images[index].append(await read_image(url, limits, param))
    return images


async def read_image(url: str, limits: ApiConfig, param: str) -> Image:
    """The checked image ``url`` names (the module docstring says how and which errors)."""
    if url[:5].lower() == "data:":
        data = _from_data_url(url, limits, param)
    else:
        data = await _fetch(url, limits, param)
    return await asyncio.to_thread(_checked, data, limits, param)


def _from_data_url(url: str, limits: ApiConfig, param: str) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise BadRequest(
            f"'{param}' must be a base64 data URL (data:image/png;base64,...)",
            code="invalid_image_url",
            param=param,
        )
    if len(payload) > base64_size(limits.max_image_bytes) + 4:  # before decoding it
        raise _too_large(len(payload) * 3 // 4, limits, param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            f"'{param}' is not valid base64", code="invalid_image_url", param=param
        ) from None
    if len(data) > limits.max_image_bytes:
        raise _too_large(len(data), limits, param)
    return data


async def _fetch(url: str, limits: ApiConfig, param: str) -> bytes:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadRequest(
            f"'{param}' must be a data: URL or an http(s) URL",
            code="invalid_image_url",
            param=param,
        )
    host = parts.hostname.lower()
    if host not in limits.allow_image_urls:
        raise BadRequest(
            f"this server fetches no images from {host!r} (allowed: "
            f"{', '.join(limits.allow_image_urls) or 'none; send the image as a data URL'})",
            code="image_url_not_allowed",
            param=param,
        )
    failed = "could not fetch the image"
    try:
        async with (
            asyncio.timeout(limits.image_fetch_timeout_s),
            httpx.AsyncClient(follow_redirects=False, trust_env=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise BadRequest(
                    f"{failed}: {host} answered {response.status_code}",
                    code="image_fetch_failed",
                    param=param,
                )
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limits.max_image_bytes:
                    raise _too_large(len(data), limits, param)
    except TimeoutError:
        raise BadRequest(
            f"{failed} within {limits.image_fetch_timeout_s:g} s",
            code="image_fetch_failed",
            param=param,
        ) from None
    except httpx.HTTPError as exc:
        raise BadRequest(f"{failed}: {exc}", code="image_fetch_failed", param=param) from None
    return bytes(data)


def _checked(data: bytes, limits: ApiConfig, param: str) -> Image:
    """Blocking: open, bound and decode the image (a worker thread runs it)."""
    from PIL import Image as PilImage
    from PIL import UnidentifiedImageError

    invalid = f"'{param}' is not a PNG, JPEG, WebP or GIF image"
    try:
        with PilImage.open(io.BytesIO(data)) as image:
            kind = (image.format or "").lower()
            width, height = image.size
            if kind not in FORMATS:
                raise BadRequest(
                    f"{invalid} ({kind or 'unknown'})", code="invalid_image", param=param
                )
            if width * height > limits.max_image_pixels:
                raise ImageTooLarge(
                    f"'{param}' is {width} x {height} pixels; at most "
                    f"{limits.max_image_pixels} pixels",
                    code="image_too_many_pixels",
                    param=param,
                )
            image.load()  # the whole file decodes (a truncated one does not)
    except PilImage.DecompressionBombError as exc:  # a canvas far past any limit of ours
        raise ImageTooLarge(str(exc), code="image_too_many_pixels", param=param) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadRequest(f"{invalid}: {exc}", code="invalid_image", param=param) from None
    return Image(data, kind, width, height)


def _too_large(size: int, limits: ApiConfig, param: str) -> ImageTooLarge:
    return ImageTooLarge(
        f"'{param}' is {size} bytes or more; at most {limits.max_image_bytes} bytes",
        code="image_too_large",
        param=param,
    )
