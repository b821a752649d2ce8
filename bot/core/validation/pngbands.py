"""Flatten a large 8-bit RGBA PNG onto white a band of rows at a time.

Decoding it whole holds the RGBA pixels (4 bytes each) next to the RGB result:
twice the memory of the result. Here the compressed stream is inflated a band at a
time, each band is decoded by Pillow (as a small PNG of its own, so Pillow still does
the unfiltering) and pasted onto the white RGB result with its alpha as the mask: only
the result and one band are ever in memory. Blocking: run it in the image executor.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

from PIL import Image

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BAND_BYTES = 4 * 1024 * 1024  # inflated bytes per band
_RGBA8 = (8, 6)  # bit depth, colour type
# Chunks whose meaning the bands would lose: orientation, animation.
_DECLINED = frozenset({b"eXIf", b"acTL"})
_EXIF_TEXT = b"Raw profile type exif"


def _chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, start, end) of each chunk's payload."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG")
    pos = len(_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        start = pos + 8
        end = start + length
        if end + 4 > len(data):
            raise ValueError("truncated PNG chunk")
        yield kind, start, end
        if kind == b"IEND":
            return
        pos = end + 4  # skip the CRC (the header check verified every one)


def flatten_rgba_png(data: bytes) -> tuple[Image.Image, bytes | None] | None:
    """(the image flattened onto white, as RGB; its ICC profile or None), or None when
    this PNG is not a plain non-interlaced 8-bit RGBA one (decode it whole then)."""
    chunks = list(_chunks(data))
    if not chunks or chunks[0][0] != b"IHDR":
        return None
    _, start, _ = chunks[0]
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, start)
    if (depth, colour) != _RGBA8 or interlace:
        return None
    icc = None
    for kind, start, end in chunks:
        if kind in _DECLINED:
            return None
        if kind in (b"tEXt", b"zTXt", b"iTXt") and data[start:end].startswith(_EXIF_TEXT):
            return None
        if kind == b"iCCP":
            name_end = data.index(b"\0", start, end)
            icc = zlib.decompress(data[name_end + 2 : end])
    idat = [(start, end) for kind, start, end in chunks if kind == b"IDAT"]
    result = Image.new("RGB", (width, height), (255, 255, 255))
    stride = 1 + 4 * width  # a filter byte, then the row
    rows_per_band = max(1, _BAND_BYTES // stride)
    y = 0
    previous: bytes | None = None  # the last row decoded, unfiltered
    pending = bytearray()
    inflater = zlib.decompressobj()
    view = memoryview(data)
    for start, end in idat:
        compressed: bytes | memoryview = view[start:end]
        while compressed:
            pending += inflater.decompress(compressed, _BAND_BYTES)
            compressed = inflater.unconsumed_tail
            while len(pending) >= rows_per_band * stride and y < height:
                rows = min(rows_per_band, height - y)
                y, previous = _paste_band(result, y, width, rows, pending, previous)
    pending += inflater.flush()
    while y < height and len(pending) >= stride:
        rows = min(rows_per_band, height - y, len(pending) // stride)
        y, previous = _paste_band(result, y, width, rows, pending, previous)
    if y < height:
        raise ValueError("the PNG data ends early")
    return result, icc


def _paste_band(
    result: Image.Image,
    y: int,
    width: int,
    rows: int,
    pending: bytearray,
    previous: bytes | None,
) -> tuple[int, bytes]:
    """Decode the first `rows` rows of `pending` (and drop them from it), paste them
    onto `result` at row `y`. Returns the next row and the last row's pixels."""
    size = rows * (1 + 4 * width)
    body = bytes(pending[:size])
    del pending[:size]
    # Rows filtered against the row above need it: lead with the last decoded row,
    # stored unfiltered (filter type 0), and leave it out after decoding.
    lead = 0 if previous is None else 1
    if previous is not None:
        body = b"\0" + previous + body
    header = struct.pack(">IIBBBBB", width, rows + lead, 8, 6, 0, 0, 0)
    png = _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(body, 0))
    png += _chunk(b"IEND", b"")
    del body
    with Image.open(io.BytesIO(png), formats=("PNG",)) as decoded:
        decoded.load()
        band = decoded.crop((0, lead, width, rows + lead)) if lead else decoded
        result.paste(band, (0, y), band)  # its alpha as the mask: over white
        last = band.crop((0, rows - 1, width, rows)).tobytes()
    return y + rows, last


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
