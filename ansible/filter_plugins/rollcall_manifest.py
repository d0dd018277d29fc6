"""Ansible filter: the files of rollcall model packs, read from models/manifest.toml (name, sha256, size)."""

from __future__ import annotations

import tomllib
from typing import Any


def rollcall_pack_files(manifest_text: str, packs: list[str] | str) -> list[dict[str, Any]]:
    """Every file (detector, recogniser) of ``packs``, once each, with its sha256 and size from the manifest."""
    manifest = tomllib.loads(manifest_text)
    names = [packs] if isinstance(packs, str) else list(packs)
    known = manifest.get("packs", {})
    files: dict[str, dict[str, Any]] = {}
    for pack in names:
        if pack not in known:
            raise ValueError(f"model pack {pack!r} is not in the manifest; known packs: {', '.join(sorted(known))}")
        for role in ("detector", "recogniser"):
            name = known[pack][role]
            entry = manifest["files"][name]
            files[name] = {"name": name, "sha256": entry["sha256"], "size": entry.get("size")}
    return list(files.values())


class FilterModule:
    """The rollcall filters."""

    def filters(self) -> dict[str, Any]:
        """Filter name to function."""
        return {"rollcall_pack_files": rollcall_pack_files}
