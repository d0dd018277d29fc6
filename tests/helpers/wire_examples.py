"""The JSON examples of docs/wire.md, as (topic, payload text) pairs, so tests can hold the docs to the schema."""

from __future__ import annotations

import re
from pathlib import Path

WIRE_DOC = Path(__file__).resolve().parents[2] / "docs" / "wire.md"
_BLOCK_RE = re.compile(r"^```json topic=(?P<topic>\S+)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def doc_examples(path: Path = WIRE_DOC) -> list[tuple[str, str]]:
    """Every fenced ```json topic=...``` block in the wire document, in order."""
    return [(m["topic"], m["body"]) for m in _BLOCK_RE.finditer(path.read_text(encoding="utf-8"))]
