"""Images for the vision tests, made with Pillow (real files of a chosen size and format), and
the tiny VLM's configuration."""

from __future__ import annotations

import base64
import io
from pathlib import Path


def image_bytes(width: int = 64, height: int = 48, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def vlm_toml(vlm: Path, *, allow: str = '["127.0.0.1"]') -> str:
    return f"""
[engines.vlm]
role = "vlm"
adapter = "transformers"
model = "{vlm}"
options = {{ max_new_tokens = 6 }}

[api]
max_image_bytes = 20000
max_image_pixels = 40000
max_images = 3
allow_image_urls = {allow}
image_fetch_timeout_s = 5
"""
