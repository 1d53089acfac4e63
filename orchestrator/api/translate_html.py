"""``format = "html"`` for ``POST /translate``: the text between tags is translated, the markup is
kept as it was (LibreTranslate translates the text nodes too). Script and style bodies are not
text to translate."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser

_RAW = frozenset({"script", "style"})


class _Pieces(HTMLParser):
    """The document as markup and text pieces, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[tuple[bool, str]] = []  # (is text, the piece)
        self._raw = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.pieces.append((False, self.get_starttag_text() or ""))
        self._raw += tag in _RAW

    def handle_startendtag(self, tag: str, attrs: object) -> None:
        self.pieces.append((False, self.get_starttag_text() or ""))

    def handle_endtag(self, tag: str) -> None:
        self.pieces.append((False, f"</{tag}>"))
        self._raw -= tag in _RAW and self._raw > 0

    def handle_data(self, data: str) -> None:
        self.pieces.append((not self._raw and bool(data.strip()), data))

    def handle_comment(self, data: str) -> None:
        self.pieces.append((False, f"<!--{data}-->"))

    def handle_decl(self, decl: str) -> None:
        self.pieces.append((False, f"<!{decl}>"))


async def translate_html(
    document: str, translate: Callable[[list[str]], Awaitable[list[str]]]
) -> str:
    """``document`` with each text node replaced by its translation (escaped again)."""
    parser = _Pieces()
    parser.feed(document)
    parser.close()
    texts = [piece for is_text, piece in parser.pieces if is_text]
    done = iter(await translate(texts) if texts else [])
    out = []
    for is_text, piece in parser.pieces:
        out.append(html.escape(next(done), quote=False) if is_text else piece)
    return "".join(out)
