"""Format detection from magic bytes, and cheap header parsing.

Reads only headers and chunk framing: dimensions come out before Pillow is asked to
open anything (so a bomb is refused by its header), and the files the providers take as
they are (JPEG, PNG, BMP, WebP) are checked for truncation without decoding pixels.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass


class InvalidImage(Exception):
    """The bytes cannot be used. `reasons` read after a label: 'image 2 <reason>'."""

    def __init__(self, *reasons: str) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


@dataclass(frozen=True)
class Header:
    format: str
    width: int
    height: int
    bit_depth: int = 8
    # Alpha that Pillow does not report: a 32-bit BI_RGB BMP using its 4th byte.
    bmp_alpha: bool = False


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")


def detect_format(data: bytes) -> str | None:
    """JPEG, PNG, GIF, BMP, WEBP, TIFF, AVIF or HEIC from the first bytes, else None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIC"
    return None


def describe_non_image(data: bytes) -> str | None:
    """'an HTML page', 'an SVG drawing', ... for common things that are not images."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"%pdf"):
        return "a PDF document"
    if head.startswith(b"pk\x03\x04"):
        return "a ZIP archive"
    if head.startswith(b"<"):
        if b"<svg" in head:
            return "an SVG drawing"
        if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
            return "an HTML page"
        return "XML or HTML text"
    try:
        text = data[:1024].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "text"
    return None


def read_header(fmt: str, data: bytes) -> Header | None:
    """Dimensions (and integrity, where cheap) of the formats parsed here; None for others."""
    parser = _PARSERS.get(fmt)
    if parser is None:
        return None
    try:
        return parser(data)
    except (struct.error, IndexError) as exc:
        raise _incomplete(fmt) from exc


def _incomplete(fmt: str) -> InvalidImage:
    return InvalidImage(f"is damaged or incomplete (the {fmt} data ends early or is corrupt)")


def _png(data: bytes) -> Header:
    view = memoryview(data)
    pos, end_of_data = 8, len(data)
    width = height = depth = 0
    while True:
        if pos + 12 > end_of_data:
            raise _incomplete("PNG")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > end_of_data:
            raise _incomplete("PNG")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        # CRC over type+data: ~1 ms per MB, and catches damaged uploads without inflating.
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            raise InvalidImage("is damaged (a PNG checksum does not match)")
        if pos == 8:
            width, height, depth, _color = struct.unpack_from(">IIBB", data, pos + 8)
            if kind != b"IHDR" or length != 13 or width == 0 or height == 0:
                raise _incomplete("PNG")
        if kind == b"IEND":
            break
        pos = end
    return Header("PNG", width, height, bit_depth=depth)


# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg(data: bytes) -> Header:
    pos, size = 2, len(data)
    frame: tuple[int, int, int] | None = None
    while True:
        if pos >= size:
            raise _incomplete("JPEG")
        if data[pos] != 0xFF:
            raise _incomplete("JPEG")
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            raise _incomplete("JPEG")
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            continue
        if marker == 0xD9:
            raise _incomplete("JPEG")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > size:
            raise _incomplete("JPEG")
        if marker in _SOF_MARKERS:
            precision, height, width = struct.unpack_from(">BHH", data, pos + 2)
            frame = (width, height, precision)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            scan = pos + length
            break
        pos += length
    # In scan data 0xFF is always stuffed (FF00), so FFD9 can only be the end marker.
    if frame is None or frame[0] == 0 or frame[1] == 0 or data.find(b"\xff\xd9", scan) < 0:
        raise _incomplete("JPEG")
    return Header("JPEG", frame[0], frame[1], bit_depth=frame[2])


def _gif(data: bytes) -> Header:
    # Integrity is proven by the full decode: a GIF is always converted.
    width, height = struct.unpack_from("<HH", data, 6)
    return Header("GIF", width, height)


def _bmp(data: bytes) -> Header:
    size = len(data)
    (offset,) = struct.unpack_from("<I", data, 10)
    (dib,) = struct.unpack_from("<I", data, 14)
    if size < 14 + dib:
        raise _incomplete("BMP")
    if dib == 12:  # OS/2 core header
        width, height, _planes, bits = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    elif dib >= 40:
        width, height, _planes, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    else:
        raise _incomplete("BMP")
    height = abs(height)  # negative: rows stored top-down
    if width <= 0 or height == 0:
        raise _incomplete("BMP")
    if compression in (0, 3, 6):  # uncompressed: the pixel array size is known
        stride = (width * bits + 31) // 32 * 4
        if size < offset + stride * height:
            raise _incomplete("BMP")
    bmp_alpha = False
    if bits == 32 and compression == 0 and dib >= 40:
        # Officially padding, but many tools (Pillow's RGBA save among them) put alpha
        # there. All 0 or all 255 means unused.
        alpha = data[offset + 3 : offset + width * height * 4 : 4]
        bmp_alpha = alpha.count(0) != len(alpha) and alpha.count(255) != len(alpha)
    return Header("BMP", width, height, bmp_alpha=bmp_alpha)


def _webp(data: bytes) -> Header:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if len(data) < 8 + riff_size:
        raise _incomplete("WebP")
    chunk = data[12:16]
    if chunk == b"VP8X":
        if len(data) < 30:
            raise _incomplete("WebP")
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
    elif chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _incomplete("WebP")
        width, height = struct.unpack_from("<HH", data, 26)
        width, height = width & 0x3FFF, height & 0x3FFF
    elif chunk == b"VP8L":
        if data[20] != 0x2F:
            raise _incomplete("WebP")
        (bits,) = struct.unpack_from("<I", data, 21)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    else:
        raise _incomplete("WebP")
    return Header("WEBP", width, height)


_PARSERS = {"PNG": _png, "JPEG": _jpeg, "GIF": _gif, "BMP": _bmp, "WEBP": _webp}
