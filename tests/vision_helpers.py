"""Images for the vision tests, made with Pillow: real files of a chosen size and format."""

from __future__ import annotations

import base64
import io


def image_bytes(width: int = 64, height: int = 48, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"
