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
