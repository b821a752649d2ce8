"""A corpus of good and bad input images, generated in code, with expected verdicts.

Every case says what the bot must do with it with image normalisation on and off:
accept it unchanged, repair it (and say so in a note), or refuse it (with a message
containing `fragment`). `at_metadata` marks refusals that Discord's attachment metadata
alone already proves, before anything is downloaded.

Used by tests/test_validation_corpus.py; meant to be pushed through the whole /imagine
flow as well: `for case in CASES: case.data(), case.meta(index), case.expect(normalize)`.
Bytes are built once per process (cached) and deterministically.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image

from bot.core.validation import HARD_MAX_BYTES, MAX_BYTES, ImageMeta


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # sent as it is (a URL source keeps its URL)
    NORMALIZED = "normalized"  # repaired; a note containing `fragment` tells the user
    REJECTED = "rejected"  # refused; a problem containing `fragment` tells the user


@dataclass(frozen=True)
class Expect:
    verdict: Verdict
    fragment: str = ""
    at_metadata: bool = False


ACCEPTED = Expect(Verdict.ACCEPTED)


def fixed(fragment: str) -> Expect:
    return Expect(Verdict.NORMALIZED, fragment)


def refused(fragment: str, *, at_metadata: bool = False) -> Expect:
    return Expect(Verdict.REJECTED, fragment, at_metadata)


Factory = Callable[[], bytes]
AUTO = "auto"
_CACHE: dict[str, bytes] = {}
# What Discord derives from the file name (it never looks inside).
_CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "bmp": "image/bmp",
    "webp": "image/webp",
    "gif": "image/gif",
    "tiff": "image/tiff",
    "ppm": "image/x-portable-pixmap",
    "svg": "image/svg+xml",
}


@dataclass(frozen=True)
class ImageCase:
    name: str
    filename: str
    make: Factory
    on: Expect  # with normalisation on (the default)
    off: Expect
    # width/height as Discord reports them; AUTO: read from the header when readable
    dims: tuple[int, int] | str | None = AUTO

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.filename.rsplit(".", 1)[-1]]

    def data(self) -> bytes:
        if self.name not in _CACHE:
            _CACHE[self.name] = self.make()
        return _CACHE[self.name]

    def reported_dims(self) -> tuple[int, int] | None:
        if self.dims != AUTO:
            return self.dims  # type: ignore[return-value]
        try:
            with Image.open(io.BytesIO(self.data())) as img:
                return img.size
        except Exception:
            return None

    def meta(self, index: int = 1) -> ImageMeta:
        width, height = self.reported_dims() or (None, None)
        return ImageMeta(
            index=index,
            filename=self.filename,
            size=len(self.data()),
            content_type=self.content_type,
            width=width,
            height=height,
        )

    def expect(self, normalize: bool) -> Expect:
        return self.on if normalize else self.off


# --- builders ---------------------------------------------------------------------------

COLOR = (200, 120, 40)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def solid(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB", **options: object) -> bytes:
    color: object = COLOR if mode in ("RGB", "CMYK") else COLOR[0]
    if mode == "P":
        color = 0
    if mode in ("RGBA", "LA"):
        color = (*COLOR[: len(mode) - 1], 128)
    if mode == "CMYK":
        color = (10, 80, 160, 20)
    return encode(Image.new(mode, size, color), fmt, **options)  # type: ignore[arg-type]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def handmade_png(width: int, height: int, idat: bytes, *, depth: int = 8, color: int = 2) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def pad_png(data: bytes, total: int) -> bytes:
    """Insert a private ancillary chunk before IEND so the file is exactly `total` bytes."""
    padding = total - len(data) - 12
    assert padding >= 0, "the PNG is already larger than the target"
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + png_chunk(b"wnPd", bytes(padding)) + data[iend:]


def pad_jpeg(data: bytes, total: int) -> bytes:
    """Insert COM segments after SOI so the file is exactly `total` bytes."""
    extra = total - len(data)
    segments = []
    while extra > 0:
        take = min(extra, 65537)  # 2 marker + 2 length + 65533 payload
        if 0 < extra - take < 4:
            take -= 4
        segments.append(b"\xff\xfe" + struct.pack(">H", take - 2) + bytes(take - 4))
        extra -= take
    return data[:2] + b"".join(segments) + data[2:]


def big_solid_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of any size, cheaply: one deflate stream of identical rows."""
    row = b"\x00" + bytes(COLOR) * width
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return handmade_png(width, height, body)


def bmp32(width: int, height: int, alpha: int, *, v4_alpha_mask: bool = False) -> bytes:
    """A 32-bit BMP: BI_RGB with `alpha` in the 4th byte, or a V4 header with an alpha mask."""
    pixels = bytes([COLOR[2], COLOR[1], COLOR[0], alpha]) * (width * height)
    if v4_alpha_mask:
        dib = struct.pack(
            "<IiiHHIIiiII", 108, width, height, 1, 32, 3, len(pixels), 2835, 2835, 0, 0
        )
        dib += struct.pack("<IIII", 0xFF0000, 0xFF00, 0xFF, 0xFF000000) + b"BGRs" + bytes(48)
    else:
        dib = struct.pack(
            "<IiiHHIIiiII", 40, width, height, 1, 32, 0, len(pixels), 2835, 2835, 0, 0
        )
    offset = 14 + len(dib)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + dib + pixels


def animated(fmt: str, frames: int = 3, size: tuple[int, int] = (400, 400)) -> bytes:
    images = [Image.new("RGB", size, (i * 60, 100, 200 - i * 50)) for i in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=100)


def exif_rotated_jpeg(width: int, height: int) -> bytes:
    """Stored width x height with EXIF orientation 6: shown rotated a quarter turn."""
    image = Image.new("RGB", (width, height), COLOR)
    exif = image.getexif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes())


def gradient_gif() -> bytes:
    """A GIF whose pixel data is most of the file, so cutting it damages the first frame."""
    return encode(Image.linear_gradient("L").resize((400, 400)).rotate(30), "GIF")


def png_16bit_rgb(width: int, height: int) -> bytes:
    row = b"\x00" + b"\x80\x00\x40\x00\x20\x00" * width  # 16 bits per channel
    return handmade_png(width, height, zlib.compress(row * height), depth=16)


def truncated(make: Factory) -> Factory:
    return lambda: (data := make())[: len(data) // 2]


def bad_png_crc() -> bytes:
    data = bytearray(solid((400, 400)))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # a byte of compressed data: the chunk CRC no longer matches
    return bytes(data)


def bomb_png() -> bytes:
    """A header claiming 60000x60000 px with a tiny (valid-framed) IDAT."""
    return handmade_png(60000, 60000, zlib.compress(b"\x00" * 64))


def noise(size: int, seed: int) -> bytes:
    return b"\x13\x37" + random.Random(seed).randbytes(size - 2)


# --- the corpus ---------------------------------------------------------------------------


def image(fmt: str, width: int, height: int, mode: str = "RGB", **options: object) -> Factory:
    return lambda: solid((width, height), fmt, mode, **options)


def early(fragment: str) -> Expect:
    """Refused from Discord's metadata, before any download."""
    return refused(fragment, at_metadata=True)


OK = ACCEPTED
ALPHA_ON, ALPHA_OFF = fixed("transparency flattened onto white"), refused("has transparency")
DAMAGED = refused("damaged or incomplete")
TOO_BIG_OFF = early(f"{MAX_BYTES + 1:,} bytes; the limit is {MAX_BYTES:,} bytes")
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512"/>\n'
HTML = b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n"
C = ImageCase

# fmt: off
CASES: list[ImageCase] = [
    # each format, plain and fine
    C("jpeg", "photo.jpg", image("JPEG", 512, 512), OK, OK),
    C("png", "pic.png", image("PNG", 512, 512), OK, OK),
    C("bmp24", "pic.bmp", image("BMP", 512, 400), OK, OK),
    C("webp_lossy", "pic.webp", image("WEBP", 512, 512), OK, OK),
    C("webp_lossless", "pic.webp", image("WEBP", 512, 512, lossless=True), OK, OK),
    C("jpeg_exif_rotated", "phone.jpg", lambda: exif_rotated_jpeg(600, 400), OK, OK),
    C("gif", "pic.gif", image("GIF", 400, 400),
      fixed("converted from GIF to PNG"), refused("is a GIF image")),
    C("tiff", "scan.tiff", image("TIFF", 400, 400),
      fixed("converted from TIFF to PNG"), refused("is a TIFF image")),
    C("ppm", "pic.ppm", image("PPM", 400, 400),
      fixed("converted from PPM to PNG"), refused("is a PPM image")),
    # side bounds at -1 / exact / +1
    C("width_383", "w383.png", image("PNG", 383, 400), fixed("scaled 383x400 -> 384x401"),
      early("is 383x400 px; each side must be at least 384 px")),
    C("width_384", "w384.png", image("PNG", 384, 400), OK, OK),
    C("width_385", "w385.png", image("PNG", 385, 400), OK, OK),
    C("height_383", "h383.jpg", image("JPEG", 400, 383), fixed("scaled 400x383 -> 401x384"),
      early("is 400x383 px; each side must be at least 384 px")),
    C("width_4999", "w4999.png", image("PNG", 4999, 400), OK, OK),
    C("width_5000", "w5000.png", image("PNG", 5000, 400), OK, OK),
    C("width_5001", "w5001.png", image("PNG", 5001, 400), fixed("scaled 5001x400 -> 5000x400"),
      early("is 5001x400 px; each side must be at most 5000 px")),
    C("height_5001", "h5001.jpg", image("JPEG", 400, 5001), fixed("scaled 400x5001 -> 400x5000"),
      early("is 400x5001 px; each side must be at most 5000 px")),
    C("width_5001_height_384", "wide.png", image("PNG", 5001, 384),
      fixed("scaled 5001x384 -> 5000x384"), early("at most 5000 px")),
    C("tiny_100", "icon.png", image("PNG", 100, 100),
      fixed("scaled 100x100 -> 384x384"), early("at least 384 px")),
    C("big_5200x600", "pano.png", image("PNG", 5200, 600),
      fixed("scaled 5200x600 -> 5000x577"), early("at most 5000 px")),
    # stored 500x300 with EXIF "rotate 90": the note shows the upright size
    C("exif_rotated_small", "phone.jpg", lambda: exif_rotated_jpeg(500, 300),
      fixed("scaled 300x500 -> 384x640"), early("at least 384 px")),
    # shapes no scaling can fix
    C("strip_5001x383", "strip.png", image("PNG", 5001, 383),
      early("cannot be scaled to fit"), early("each side must be 384-5000 px")),
    C("strip_5000x300", "strip.png", image("PNG", 5000, 300),
      early("cannot be scaled to fit"), early("at least 384 px")),
    # file size around 10 MB (10 * 1024 * 1024 bytes) and the 50 MB hard cap
    C("png_10mb_minus_1", "big.png", lambda: pad_png(solid((512, 512)), MAX_BYTES - 1), OK, OK),
    C("png_10mb_exact", "big.png", lambda: pad_png(solid((512, 512)), MAX_BYTES), OK, OK),
    C("png_10mb_plus_1", "big.png", lambda: pad_png(solid((512, 512)), MAX_BYTES + 1),
      fixed("re-encoded to fit 10 MB"), TOO_BIG_OFF),
    C("jpeg_10mb_plus_1", "big.jpg", lambda: pad_jpeg(solid((512, 512), "JPEG"), MAX_BYTES + 1),
      fixed("(quality 92) to fit 10 MB"), TOO_BIG_OFF),
    C("png_5000x5000_10mb", "huge.png", lambda: pad_png(big_solid_png(5000, 5000), MAX_BYTES),
      OK, OK),
    C("png_over_hard_cap", "huge.png", lambda: pad_png(solid((512, 512)), HARD_MAX_BYTES + 1),
      early("bytes (50 MB)"), early("is 50 MB; the limit is 10 MB")),
    # transparency
    C("png_rgba", "logo.png", image("PNG", 400, 400, "RGBA"), ALPHA_ON, ALPHA_OFF),
    C("png_la", "logo.png", image("PNG", 400, 400, "LA"), ALPHA_ON, ALPHA_OFF),
    C("png_palette_trns", "logo.png", image("PNG", 400, 400, "P", transparency=0),
      ALPHA_ON, ALPHA_OFF),
    C("png_rgb_trns", "logo.png", image("PNG", 400, 400, transparency=COLOR), ALPHA_ON, ALPHA_OFF),
    C("webp_alpha", "logo.webp", image("WEBP", 400, 400, "RGBA"), ALPHA_ON, ALPHA_OFF),
    C("bmp32_alpha", "logo.bmp", lambda: bmp32(400, 400, 128), ALPHA_ON, ALPHA_OFF),
    C("bmp32_v4_alpha", "logo.bmp", lambda: bmp32(400, 400, 128, v4_alpha_mask=True),
      ALPHA_ON, ALPHA_OFF),
    C("bmp32_no_alpha", "pic.bmp", lambda: bmp32(400, 400, 0), OK, OK),
    C("gif_transparent", "sticker.gif", image("GIF", 400, 400, "P", transparency=0),
      ALPHA_ON, refused("is a GIF image")),
    # colour model and depth: within the documented rules, so only normalisation acts
    C("jpeg_cmyk", "print.jpg", image("JPEG", 400, 400, "CMYK"),
      fixed("CMYK colours converted to RGB"), OK),
    C("png_16bit_gray", "scan.png", lambda: encode(Image.new("I;16", (400, 400), 40000), "PNG"),
      fixed("16-bit colour reduced to 8-bit"), OK),
    C("png_16bit_rgb", "scan.png", lambda: png_16bit_rgb(400, 400),
      fixed("16-bit colour reduced to 8-bit"), OK),
    # animation
    C("gif_animated", "anim.gif", lambda: animated("GIF"),
      fixed("first frame of 3 used"), refused("is animated (3 frames)")),
    C("webp_animated", "anim.webp", lambda: animated("WEBP"),
      fixed("first frame of 3 used"), refused("is animated (3 frames)")),
    C("png_animated", "anim.png", lambda: animated("PNG"),
      fixed("first frame of 3 used"), refused("is animated (3 frames)")),
    # damaged
    C("png_truncated", "cut.png", truncated(image("PNG", 400, 400)), DAMAGED, DAMAGED),
    C("jpeg_truncated", "cut.jpg", truncated(image("JPEG", 400, 400)), DAMAGED, DAMAGED),
    C("webp_truncated", "cut.webp", truncated(image("WEBP", 400, 400)), DAMAGED, DAMAGED),
    C("bmp_truncated", "cut.bmp", truncated(image("BMP", 400, 400)), DAMAGED, DAMAGED),
    # normalisation off never decodes a GIF: its format is refused first
    C("gif_truncated", "cut.gif", truncated(gradient_gif), DAMAGED, refused("is a GIF image")),
    C("png_bad_crc", "bad.png", bad_png_crc,
      refused("checksum does not match"), refused("checksum does not match")),
    # not images at all, whatever the name says
    C("zero_bytes", "empty.png", lambda: b"", early("is empty (0 bytes)"),
      early("is empty (0 bytes)")),
    C("html_as_png", "cat.png", lambda: HTML,
      refused("it is an HTML page"), refused("it is an HTML page")),
    C("svg_as_png", "logo.png", lambda: b'<?xml version="1.0"?>\n' + SVG,
      refused("it is an SVG drawing"), refused("it is an SVG drawing")),
    C("text_as_png", "notes.png", lambda: b"this is not a picture\njust some text\n",
      refused("it is text"), refused("it is text")),
    C("noise_as_jpg", "noise.jpg", lambda: noise(4096, seed=4),
      refused("not an image format the bot can read"),
      refused("not an image format the bot can read")),
    C("svg_named_svg", "logo.svg", lambda: SVG,
      early("is an SVG drawing"), early("is an SVG drawing")),
    # decompression bombs: refused from the header, never decoded
    C("png_bomb_60000", "bomb.png", bomb_png,
      refused("is 60000x60000 px (3600 megapixels); the limit is 50 megapixels"),
      refused("is 60000x60000 px (3600 megapixels)")),
    C("png_bomb_reported", "bomb.png", bomb_png,
      early("the limit is 50 megapixels"), early("60000x60000"), dims=(60000, 60000)),
]
# fmt: on

assert len({case.name for case in CASES}) == len(CASES), "case names must be unique"


def case(name: str) -> ImageCase:
    return next(c for c in CASES if c.name == name)


# --- test doubles for prepare_images (in-process, no network) ------------------------------


class FakeFetchError(Exception):
    """Stands in for bot.core.download.DownloadError: `reason` is fit for users."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FakeDownloaded:
    data: bytes
    content_type: str = "application/octet-stream"
    url: str = ""


class FakeFetcher:
    """Serves bytes by URL and enforces `max_bytes` like SafeDownloader."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files or {})
        self.failures: dict[str, Exception] = {}
        self.calls: list[tuple[str, int | None]] = []

    async def fetch(
        self, url: str, *, max_bytes: int | None = None, any_type: bool = False
    ) -> FakeDownloaded:
        self.calls.append((url, max_bytes))
        if url in self.failures:
            raise self.failures[url]
        if url not in self.files:
            raise FakeFetchError("the image is no longer available (HTTP 404)")
        data = self.files[url]
        if max_bytes is not None and len(data) > max_bytes:
            raise FakeFetchError(f"the file is larger than {max_bytes} bytes")
        return FakeDownloaded(data, url=url)


@dataclass(frozen=True)
class Upload:
    data: bytes
    content_type: str
    filename: str
    url: str


class FakeHost:
    """An ImageHost that keeps what it was given."""

    def __init__(self) -> None:
        self.uploads: list[Upload] = []

    async def host(self, data: bytes, content_type: str, filename: str) -> str:
        url = f"https://files.example.test/{len(self.uploads) + 1}/{filename}"
        self.uploads.append(Upload(data, content_type, filename, url))
        return url
