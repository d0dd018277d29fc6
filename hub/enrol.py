"""Enrolment on the hub: photos (files or folders) and device captures become face templates, with reasons."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from edge.protocol import wire
from edge.recognition.photos import IMAGE_SUFFIXES
from hub.context import HubContext
from hub.store import HubStore

if TYPE_CHECKING:
    from edge.recognition.faces import FaceEngine

log = logging.getLogger("rollcall.hub.api")

EmbedCapture = Callable[[bytes], tuple[Any, float, str | None]]
"""A device's enrolment crop (JPEG) -> embedding, quality, problem (None: usable): :meth:`Enroller.embed_capture`."""


def photo_paths(paths: list[str]) -> list[Path]:
    """Every photo named, folders expanded (sorted); missing paths raise with their name."""
    found: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"no such photo or folder: {path}")
    if not found:
        raise ValueError("no photos found in " + ", ".join(paths))
    return found


class Enroller:
    """Checks each photo (no face, several faces, too small, too blurred...) and stores the good ones as templates."""

    def __init__(self, engine: FaceEngine, store: HubStore, model_id: str, clock: Any) -> None:
        self.engine = engine
        self.store = store
        self.model_id = model_id
        self.clock = clock

    def enrol_photos(self, person_id: str, paths: list[str]) -> JsonValue:
        """Enrol photos for a person; returns per-photo results (``ok`` and a ``reason`` for the refused)."""
        now: datetime = self.clock()
        results: list[JsonValue] = []
        for photo in photo_paths(paths):
            result = self.engine.enrol_photo(photo, person_id, strict=True)
            if result.embedding is not None and result.observation is not None:
                self.store.add_template(
                    person_id,
                    self.model_id,
                    result.embedding,
                    result.observation.quality.score,
                    f"photo:{photo.name}",
                    now,
                )
            results.append({"photo": str(photo), "ok": result.ok, "reason": result.reason})
        enrolled = sum(1 for r in results if isinstance(r, dict) and r["ok"])
        return {"person_id": person_id, "enrolled": enrolled, "photos": results}

    def embed_capture(self, jpeg: bytes) -> tuple[Any, float, str | None]:
        """Embedding, quality and problem (None when usable) of a device's enrolment crop."""
        import cv2  # the face engine's libraries load only where enrolment from pictures runs
        import numpy as np

        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return None, 0.0, "not a readable JPEG"
        faces = self.engine.observe(np.asarray(image, dtype=np.uint8))
        if not faces:
            return None, 0.0, "no face found"
        face = max(faces, key=lambda o: o.detection.area)
        problems = face.quality.problems(self.engine.limits)
        if problems:
            return None, face.quality.score, "; ".join(problems)
        return self.engine.embed([face])[0], face.quality.score, None


class CaptureEnrolment:
    """Turns the face crops a device took on an ``enrol_capture`` command into templates of that person.

    ``embed`` is None when the hub has no face models (captures are then stored but not enrolled);
    ``templates_changed`` is called after a template was added (the galleries follow).
    """

    def __init__(self, context: HubContext, embed: EmbedCapture | None, templates_changed: Callable[[], None]) -> None:
        self.context = context
        self.embed = embed
        self.templates_changed = templates_changed

    def on_capture(self, capture: wire.Capture, now: datetime) -> None:
        """A face crop a device took for enrolment: make it a template of that person."""
        store = self.context.store
        if self.embed is None or capture.person_id is None:
            return
        if store.get_person(capture.person_id) is None:
            return
        embedding, quality, problem = self.embed(capture.data)
        if problem is not None or embedding is None:
            log.info("enrolment capture %s not used: %s", capture.capture_id, problem)
            return
        store.add_template(
            capture.person_id, self.context.model_id, embedding, quality, f"capture:{capture.capture_id}", now
        )
        self.templates_changed()
