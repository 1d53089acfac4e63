"""Ogg pages of an Opus stream: one continuous stream spliced from several, and the audio a
stream carries counted without decoding it (RFC 3533, 7845).

A ``/v1/duplex`` client hears one Ogg Opus stream for the whole session, while its audio may come
from the duplex engine's own stream first and from our encoder after a failover. Passing the
engine's pages on as they are (instead of decoding them and encoding again) saves the encoder's
time on every frame and a second lossy pass; ``OggSplicer`` makes the sources one stream:

    source A: [BOS OpusHead][OpusTags][audio g=1920][audio g=3840] ...
    source B:                                        [BOS OpusHead][OpusTags][audio g=1920] ...
    out:      [BOS OpusHead][OpusTags][audio g=1920][audio g=3840][audio g=5760] ...

The first source's header pages open the stream; a later source (it starts with a BOS page) has
its header pages dropped and its pages renumbered: the page sequence goes on, its granule
positions follow on from the last one sent, the serial number is the stream's and no page ends
the stream. Both sources here are Ogg Opus at the same rate (the engine's and ours are 24 kHz
mono), so the client's decoder goes on across the seam. A page that needs no change (the first
source's, normally all of them) is passed on byte for byte; a changed one gets its CRC again.

``OggCounter`` reads how much audio the client's pages carry from their granule positions, so
that ``/v1/duplex`` counts the frames it passes on to the engine without decoding them.
"""

from __future__ import annotations

import struct
from typing import Protocol, runtime_checkable

CAPTURE = b"OggS"
HEADER_BYTES = 27  # up to the segment table
_BOS, _EOS = 0x02, 0x04
_FIELDS = struct.Struct("<qII")  # granule position, serial number, page sequence number (at 6)
_CRC_AT = 22


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        value = byte << 24
        for _ in range(8):
            value = (value << 1) ^ 0x04C11DB7 if value & 0x80000000 else value << 1
        table.append(value & 0xFFFFFFFF)
    return tuple(table)


_TABLE = _crc_table()


def ogg_crc(page: bytes | bytearray) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, no final xor) of a page whose CRC
    field is zero."""
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _TABLE[(crc >> 24) ^ byte]
    return crc


@runtime_checkable
class OggOpusInput(Protocol):
    """A duplex connection (``services.base.DuplexConnection``) that takes the client's own Ogg
    Opus stream as it came: no decoding and encoding again on the way. A conversation is fed
    either this way or by ``send_frame`` from its start, never both: the engine hears one
    Ogg stream."""

    async def send_ogg(self, ogg: bytes, samples: int) -> None:
        """Send the client's next Ogg Opus bytes, which hold ``samples`` samples (counted as
        sent, so that ``drain_tail`` knows what is still to be answered)."""
        ...


class OggError(ValueError):
    """Bytes that are not Ogg pages."""


def split_pages(data: bytes) -> tuple[list[bytes], bytes]:
    """The whole pages at the start of ``data``, and the bytes of an incomplete last one."""
    pages: list[bytes] = []
    at = 0
    while len(data) - at >= HEADER_BYTES:
        if data[at : at + 4] != CAPTURE:
            raise OggError(f"no Ogg capture pattern at byte {at}")
        segments = data[at + 26]
        if len(data) - at < HEADER_BYTES + segments:
            break
        size = HEADER_BYTES + segments + sum(data[at + HEADER_BYTES : at + HEADER_BYTES + segments])
        if len(data) - at < size:
            break
        pages.append(data[at : at + size])
        at += size
    return pages, data[at:]


class OggSplicer:
    """One Ogg stream out of a sequence of Ogg Opus streams, fed in any pieces (see above)."""

    def __init__(self) -> None:
        self._serial: int | None = None  # the stream's: the first source's
        self._sequence = 0  # the next page's number
        self._offset = 0  # added to the current source's granule positions
        self._granule = 0  # the last granule position sent
        self._skipping_headers = False  # a later source's header pages are being dropped
        self._rest = b""  # an incomplete page, completed by the next feed of its source
        self._source: object = None

    def feed(self, data: bytes, source: object = None) -> bytes:
        """The pages to send for ``data`` of ``source`` (b"" while a page is incomplete, or for
        dropped header pages); ``OggError`` when ``data`` is not Ogg (then nothing held is
        kept). A source's stream starts with its BOS page; an incomplete page of the source
        before is dropped."""
        if source != self._source:
            self._source, self._rest = source, b""
        try:
            pages, self._rest = split_pages(self._rest + data)
        except OggError:
            self._rest = b""
            raise
        return b"".join([self._page(page) for page in pages])

    def _page(self, page: bytes) -> bytes:
        flags = page[5]
        stamped = _FIELDS.unpack_from(page, 6)
        granule, serial, _ = stamped
        if flags & _BOS:
            if self._serial is not None:  # a new source: its headers repeat the stream's
                self._skipping_headers = True
                self._offset = self._granule
                return b""
            self._serial = serial
        elif self._skipping_headers:
            if granule == 0:
                return b""  # header pages have granule position 0 (RFC 7845, section 3)
            self._skipping_headers = False
        if self._serial is None:
            raise OggError("the stream does not start with a BOS page")
        if granule != -1:
            granule += self._offset
            self._granule = granule
        fields = (granule, self._serial, self._sequence)
        self._sequence += 1
        if fields == stamped and not flags & _EOS:
            return page
        changed = bytearray(page)
        changed[5] = flags & ~_EOS  # the client's stream ends with the session, not here
        _FIELDS.pack_into(changed, 6, *fields)
        changed[_CRC_AT : _CRC_AT + 4] = bytes(4)
        struct.pack_into("<I", changed, _CRC_AT, ogg_crc(changed))
        return bytes(changed)


class OggCounter:
    """How much audio an Ogg Opus stream's pages carry, read from their granule positions
    (48 kHz samples, RFC 7845) without decoding them, and the stream's header pages, so that a
    decoder can still be started mid-stream. A new stream (a BOS page) starts the count over."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.headers = b""  # the current stream's header pages (granule position 0)
        self._granule = 0  # the last granule position counted, of the current stream
        self._total = 0  # 48 kHz samples counted, all streams
        self._given = 0  # samples at ``rate`` returned so far
        self._rest = b""

    def count(self, data: bytes) -> int:
        """The samples at ``rate`` that ``data``'s complete pages add; ``OggError`` when it is
        not Ogg (then nothing held is kept)."""
        try:
            pages, self._rest = split_pages(self._rest + data)
        except OggError:
            self._rest = b""
            raise
        for page in pages:
            granule = _FIELDS.unpack_from(page, 6)[0]
            if page[5] & _BOS:
                self.headers, self._granule = b"", 0
            if granule == 0:
                self.headers += page
            elif granule > self._granule:
                self._total += granule - self._granule
                self._granule = granule
        samples = self._total * self.rate // 48_000 - self._given
        self._given += samples
        return samples
