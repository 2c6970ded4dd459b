"""Reading PNG images: size, text chunks and bytes hidden after the end."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Final

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


def _read_png(data: bytes) -> tuple[int, int, list[str], int] | None:
    """(width, height, texts of tEXt/zTXt/iTXt chunks, bytes after IEND), or None."""
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 33:
        return None
    pos = len(_PNG_SIGNATURE)
    width = height = 0
    texts: list[str] = []
    for length, kind, body, end in _png_chunks(data, pos):
        if kind == b"IHDR" and length >= 8:
            width, height = struct.unpack(">II", body[:8])
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            texts.append(_png_text(kind, body))
        elif kind == b"IEND":
            return width, height, texts, len(data) - end
        elif kind == b"":
            return None
    return None


def _png_chunks(data: bytes, pos: int) -> Iterator[tuple[int, bytes, bytes, int]]:
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            yield 0, b"", b"", pos
            return
        yield length, kind, data[pos + 8 : pos + 8 + length], end
        pos = end


def _png_text(kind: bytes, body: bytes) -> str:
    keyword, _, rest = body.partition(b"\0")
    try:
        if kind == b"zTXt":
            rest = zlib.decompress(rest[1:])
        elif kind == b"iTXt":
            compressed = rest[:1] == b"\x01"
            rest = rest[2:].split(b"\0", 2)[-1]
            if compressed:
                rest = zlib.decompress(rest)
    except zlib.error:
        return keyword.decode("latin-1")
    encoding = "utf-8" if kind == b"iTXt" else "latin-1"
    return f"{keyword.decode('latin-1')}: {rest.decode(encoding, 'replace')}"
