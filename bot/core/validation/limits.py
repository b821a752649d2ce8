"""What the Wan 2.5 providers accept, and the bot's own safety limits.

Numbers come from the provider docs (shared/specs/providers.md): the same on APIXO,
EvoLink and DashScope, so they are constants rather than per-provider capabilities.
"""

from __future__ import annotations

MIB = 1024 * 1024

MIN_SIDE = 384
MAX_SIDE = 5000
MAX_BYTES = 10 * MIB
# With normalisation on, a larger file may be re-encoded to fit MAX_BYTES; past this it is
# refused before it is downloaded (memory and bandwidth are ours to protect).
HARD_MAX_BYTES = 50 * MIB
# Decompression-bomb guard, checked from the header before anything is decoded. 50 Mpx
# covers 50 MP phone cameras (8160x6120) and keeps one RGBA decode under ~200 MB.
MAX_PIXELS = 50_000_000

# Formats the providers fetch as they are (detected from the bytes, never the name).
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
ACCEPTED_FORMATS_TEXT = "JPEG, PNG, BMP or WebP"

CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "WEBP": "webp"}
