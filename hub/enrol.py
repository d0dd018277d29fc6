"""Enrolment on the hub: photos (files or folders) and device captures become face templates, with reasons.

Decoding and embedding a picture can take seconds, so it runs on the :class:`EnrolmentWorker` thread, never on the
writer; only the templates are stored under the store lock. Pictures too large to decode safely are refused by the
size in their header before they are decoded.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.protocol import wire
from edge.recognition.photos import IMAGE_SUFFIXES, image_size
from hub.context import HubContext

if TYPE_CHECKING:
    from edge.recognition.faces import FaceEngine

log = logging.getLogger("rollcall.hub.api")

EmbedCapture = Callable[[bytes], tuple[Any, float, str | None]]
"""A device's enrolment crop (JPEG) -> embedding, quality, problem (None: usable): :meth:`Enroller.embed_capture`."""

HEADER_BYTES = 1024 * 1024
"""How much of a photo is read to find its size (a JPEG's size follows its EXIF and other segments)."""


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


class OutsideImportDir(ValueError):
    """A photo path that leaves the hub's import folder (or no import folder is configured)."""


def confine_to(root: Path | None, paths: list[str]) -> list[Path]:
    """``paths`` (absolute, or relative to ``root``) resolved, each inside ``root``.

    No ``..`` and no symlink may lead out. Raises :class:`OutsideImportDir` without looking at whether a path outside
    exists.
    """
    if root is None:
        raise OutsideImportDir(
            "enrolment from photos on the hub is off: set [hub] import_dir to the folder photos are copied into"
        )
    base = root.expanduser().resolve()
    confined: list[Path] = []
    for text in paths:
        if "\x00" in text:
            raise OutsideImportDir(f"photo path {text[:200]!r} is not a valid path")
        resolved = (base / Path(text).expanduser()).resolve()
        if not resolved.is_relative_to(base):
            raise OutsideImportDir(
                f"photo path {text[:200]!r} is outside the hub's import folder {base} (hub.import_dir); copy the "
                "photos into that folder and name them there (absolute, or relative to it)"
            )
        confined.append(resolved)
    return confined


def confined_photo_paths(root: Path, paths: list[Path]) -> list[Path]:
    """:func:`photo_paths` of already confined ``paths``, leaving out folder entries whose symlinks lead out."""
    base = root.expanduser().resolve()
    return [p for p in photo_paths([str(p) for p in paths]) if p.resolve().is_relative_to(base)]


@dataclass(frozen=True)
class PictureLimits:
    """The largest picture enrolment decodes (``[enrolment]`` in the hub's config)."""

    max_megapixels: float = 40.0
    max_file_mb: float = 50.0

    def problem(self, header: bytes, file_bytes: int) -> str | None:
        """Why a picture must not be decoded (too large a file or image, no readable size), or None."""
        if file_bytes > self.max_file_mb * 1024 * 1024:
            return (
                f"the file is {file_bytes / 1024 / 1024:.1f} MB, over the {self.max_file_mb:g} MB limit "
                "(enrolment.max_photo_mb); use a smaller photo"
            )
        size = image_size(header)
        if size is None:
            return "cannot read the image size from its header (expected a JPEG, PNG, BMP or WebP picture)"
        width, height = size
        if width * height > self.max_megapixels * 1_000_000:
            return (
                f"the image is {width}x{height} pixels, over the {self.max_megapixels:g}-megapixel limit "
                "(enrolment.max_photo_megapixels); scale it down"
            )
        return None


@dataclass(frozen=True)
class PhotoAssessment:
    """One photo judged: its template (None when refused), quality and the reason it was refused."""

    photo: str
    embedding: Any | None
    quality: float
    reason: str | None

    @property
    def ok(self) -> bool:
        """Whether the photo makes a template."""
        return self.embedding is not None


AssessPhotos = Callable[[list[str]], list[PhotoAssessment]]
"""Photo paths (files or folders on the hub) -> one assessment per photo: :meth:`Enroller.assess_photos`."""


class Enroller:
    """Checks each photo (no face, several faces, too small, too blurred...) and makes templates of the good ones.

    Pure compute (no store): the hub stores the templates. Safe to call from one thread at a time.
    """

    def __init__(self, engine: FaceEngine, model_id: str, limits: PictureLimits | None = None) -> None:
        self.engine = engine
        self.model_id = model_id
        self.limits = limits or PictureLimits()

    def assess_photos(self, paths: list[str]) -> list[PhotoAssessment]:
        """Judge every photo named (folders expanded); missing paths raise ValueError with their name."""
        results: list[PhotoAssessment] = []
        for photo in photo_paths(paths):
            try:
                with photo.open("rb") as file:
                    header = file.read(HEADER_BYTES)
                size = photo.stat().st_size
            except OSError as exc:
                results.append(PhotoAssessment(str(photo), None, 0.0, f"cannot read the file: {exc.strerror}"))
                continue
            problem = self.limits.problem(header, size)
            if problem is not None:
                results.append(PhotoAssessment(str(photo), None, 0.0, problem))
                continue
            result = self.engine.enrol_photo(photo, "", strict=True)
            quality = result.observation.quality.score if result.observation is not None else 0.0
            embedding = result.embedding if result.observation is not None else None
            results.append(PhotoAssessment(str(photo), embedding, quality, result.reason))
        return results

    def embed_capture(self, jpeg: bytes) -> tuple[Any, float, str | None]:
        """Embedding, quality and problem (None when usable) of a device's enrolment crop."""
        import cv2  # the face engine's libraries load only where enrolment from pictures runs
        import numpy as np

        problem = self.limits.problem(jpeg, len(jpeg))
        if problem is not None:
            return None, 0.0, problem
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


class EnrolmentWorker:
    """The thread enrolments run on, so that ingest never waits for a photo; jobs wait in a bounded queue."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(max_waiting)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = 0  # queued or running
        self._settled = threading.Condition()
        self.done = 0

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False (nothing queued) when ``max_waiting`` jobs already wait."""
        with self._settled:
            try:
                self._jobs.put_nowait(job)
            except queue.Full:
                return False
            self._pending += 1
        return True

    def start(self) -> None:
        """Start the thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="enrolment", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the job in hand (queued jobs are dropped: their requests time out and may be sent again)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running (tests and tools); False when ``timeout`` passed first."""
        with self._settled:
            return self._settled.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                job()
            except Exception:  # one bad picture must not stop enrolment
                log.exception("an enrolment job failed")
            with self._settled:
                self._pending -= 1
                self.done += 1
                self._settled.notify_all()


class CaptureEnrolment:
    """Turns the face crops a device took on an ``enrol_capture`` command into templates of that person.

    ``embed`` is None when the hub has no face models (captures are then stored but not enrolled); it runs on
    ``worker``; ``templates_changed`` is called after a template was added (the galleries follow).
    """

    def __init__(
        self,
        context: HubContext,
        embed: EmbedCapture | None,
        templates_changed: Callable[[], None],
        worker: EnrolmentWorker,
    ) -> None:
        self.context = context
        self.embed = embed
        self.templates_changed = templates_changed
        self.worker = worker

    def on_capture(self, capture: wire.Capture, now: datetime) -> None:
        """A face crop a device took for enrolment (the capture is stored): make it a template on the worker."""
        if self.embed is None or capture.person_id is None:
            return
        if self.context.store.get_person(capture.person_id) is None:
            return
        if not self.worker.submit(lambda: self._enrol(capture)):
            log.warning(
                "enrolment capture %s not used: %d enrolments are waiting already (enrolment.max_waiting)",
                capture.capture_id,
                self.worker.max_waiting,
            )

    def _enrol(self, capture: wire.Capture) -> None:
        assert self.embed is not None and capture.person_id is not None
        embedding, quality, problem = self.embed(capture.data)
        if problem is not None or embedding is None:
            log.info("enrolment capture %s not used: %s", capture.capture_id, problem)
            return
        context = self.context
        with context.store_lock:
            person = context.store.get_person(capture.person_id)
            if person is None or person.erased_at is not None:  # erased while the crop was being embedded
                return
            context.store.add_template(
                capture.person_id,
                context.model_id,
                embedding,
                quality,
                f"capture:{capture.capture_id}",
                context.clock(),
            )
        self.templates_changed()
