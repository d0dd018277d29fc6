"""Folders of photos, one sub-folder per person: the layout enrolment, evaluation and the door clips read."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def people_folders(people_dir: Path) -> dict[str, list[Path]]:
    """``{person_id: [photo, ...]}`` from one sub-folder per person ('_' or '.' folders are not people)."""
    if not people_dir.is_dir():
        raise FileNotFoundError(f"people folder not found: {people_dir} (expected one sub-folder of photos per person)")
    people: dict[str, list[Path]] = {}
    for folder in sorted(p for p in people_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if photos:
            people[folder.name] = photos
    if not people:
        raise FileNotFoundError(f"no people in {people_dir}: expected sub-folders holding .jpg/.png photos")
    return people


def image_size(header: bytes) -> tuple[int, int] | None:
    """(width, height) read from the start of a JPEG, PNG, BMP or WebP file without decoding it; None if unknown.

    Lets a caller refuse a picture that would take gigabytes to decode (a small file can hold a huge image).
    """
    if header.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(header) >= 24 and header[12:16] == b"IHDR":
            return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
        return None
    if header.startswith(b"BM"):
        if len(header) >= 26:
            width = int.from_bytes(header[18:22], "little", signed=True)
            height = int.from_bytes(header[22:26], "little", signed=True)
            return abs(width), abs(height)
        return None
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return _webp_size(header)
    if header.startswith(b"\xff\xd8"):
        return _jpeg_size(header)
    return None


def _webp_size(header: bytes) -> tuple[int, int] | None:
    chunk = header[12:16]
    if chunk == b"VP8 " and len(header) >= 30:
        return int.from_bytes(header[26:28], "little") & 0x3FFF, int.from_bytes(header[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(header) >= 25:
        bits = int.from_bytes(header[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(header) >= 30:
        return int.from_bytes(header[24:27], "little") + 1, int.from_bytes(header[27:30], "little") + 1
    return None


def _jpeg_size(header: bytes) -> tuple[int, int] | None:
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 but DHT, JPG and DAC), which has the size.
    i = 2
    while i + 9 <= len(header):
        if header[i] != 0xFF:
            return None
        marker = header[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(header[i + 7 : i + 9], "big"), int.from_bytes(header[i + 5 : i + 7], "big")
        i += 2 + int.from_bytes(header[i + 2 : i + 4], "big")
    return None
