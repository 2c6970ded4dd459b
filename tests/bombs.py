"""Hostile files an uploader can send for review: small on the wire, huge once read.

Each is built in a few seconds from repeated zeros, without ever holding its expanded
form in the test's own memory.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import pyarrow as pa
import pyarrow.parquet as pq


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def zeros_deflated(mib: int) -> bytes:
    """A zlib stream that inflates to ``mib`` MiB of zero bytes (about 1/1000 of that)."""
    squeeze = zlib.compressobj(1)
    block = b"\0" * (16 << 20)
    parts = [squeeze.compress(block) for _ in range(mib // 16)]
    return b"".join(parts) + squeeze.flush()


def png_text_bomb(mib: int = 1536) -> bytes:
    """A valid 1×1 PNG whose compressed text chunk (zTXt) inflates to ``mib`` MiB."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"zTXt", b"note\0\0" + zeros_deflated(mib))
        + _chunk(b"IDAT", zlib.compress(b"\0\0"))
        + _chunk(b"IEND", b"")
    )


def png_pixel_bomb(side: int = 20_000) -> bytes:
    """A valid greyscale PNG of ``side``×``side`` pixels, all black (400 M pixels)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    squeeze = zlib.compressobj(1)
    row = b"\0" * (side + 1)  # filter byte + pixels
    rows_per_block = max(1, (16 << 20) // len(row))
    block = row * rows_per_block
    parts = [squeeze.compress(block) for _ in range(side // rows_per_block)]
    parts.append(squeeze.compress(row * (side % rows_per_block)))
    idat = b"".join(parts) + squeeze.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def parquet_bomb(rows_per_group: int = 1_000_000, groups: int = 200) -> bytes:
    """A gzip-compressed Parquet file of ``rows_per_group × groups`` int64 zeros (1.6 GB)."""
    table = pa.table({"n": pa.array([0] * rows_per_group, pa.int64())})
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, compression="gzip") as writer:
        for _ in range(groups):
            writer.write_table(table)
    return sink.getvalue().to_pybytes()


def zip_bomb(mib: int = 512) -> bytes:
    """A ZIP archive holding one file that inflates to ``mib`` MiB of zeros."""
    out = io.BytesIO()
    block = b"\0" * (16 << 20)
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("zeros.csv", "w", force_zip64=True) as member,
    ):
        for _ in range(mib // 16):
            member.write(block)
    return out.getvalue()


def huge_notebook(outputs: int = 120_000) -> bytes:
    """A 20-odd MB notebook of one cell with a great many small outputs."""
    cell = {
        "cell_type": "code",
        "id": "c",
        "metadata": {},
        "execution_count": 1,
        "source": "for i in range(10**6): print(i)",
        "outputs": [
            {"output_type": "stream", "name": "stdout", "text": f"涪城区 {i} 人 128 元\n"}
            for i in range(outputs)
        ],
    }
    document = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}
    return json.dumps(document, ensure_ascii=False).encode()


def deep_json(depth: int = 200_000) -> bytes:
    """A JSON document nested ``depth`` arrays deep (recursion in a naive reader)."""
    return b"[" * depth + b"]" * depth
