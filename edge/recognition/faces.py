"""The face engine: detector + alignment + quality + embedder, and enrolment of people from photo folders."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.protocol.progress import Progress
from edge.recognition.align import align_face
from edge.recognition.detector import Detection, FaceDetector
from edge.recognition.embedder import FaceEmbedder
from edge.recognition.gallery import Gallery
from edge.recognition.quality import FaceQuality, QualityLimits, measure

log = logging.getLogger("rollcall.faces")


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """A detected face with its aligned crop and quality."""

    detection: Detection
    aligned: npt.NDArray[np.uint8]
    quality: FaceQuality


@dataclass(frozen=True, slots=True)
class PhotoResult:
    """What enrolment made of one photo: an embedding, or the reason there is none."""

    path: Path
    person_id: str
    embedding: npt.NDArray[np.float32] | None
    reason: str | None
    observation: FaceObservation | None = None

    @property
    def ok(self) -> bool:
        """Whether the photo gave a usable template."""
        return self.embedding is not None


@dataclass
class FaceEngine:
    """Finds, aligns, measures and embeds faces."""

    detector: FaceDetector
    embedder: FaceEmbedder
    limits: QualityLimits = field(default_factory=QualityLimits)

    def observe(
        self, image: npt.NDArray[np.uint8], detections: Iterable[Detection] | None = None
    ) -> list[FaceObservation]:
        """Detect (unless ``detections`` are given), align and measure every face in ``image``."""
        found = self.detector.detect(image) if detections is None else list(detections)
        observations = []
        for detection in found:
            aligned = align_face(image, detection.landmarks)
            observations.append(FaceObservation(detection, aligned, measure(detection, aligned)))
        return observations

    def embed(self, observations: list[FaceObservation]) -> npt.NDArray[np.float32]:
        """Embeddings of the observations' aligned crops (one row each)."""
        return self.embedder.embed([o.aligned for o in observations])

    def enrol_photo(self, path: Path, person_id: str, *, strict: bool = True) -> PhotoResult:
        """One photo to one template. ``strict`` refuses photos a person should retake (several faces, blur...)."""
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            return PhotoResult(path, person_id, None, "cannot read the image file")
        observations = self.observe(np.asarray(image, dtype=np.uint8))
        if not observations:
            return PhotoResult(path, person_id, None, "no face found")
        observations.sort(key=lambda o: o.detection.area, reverse=True)
        main = observations[0]
        if strict:
            if len(observations) > 1 and observations[1].detection.area > 0.25 * main.detection.area:
                return PhotoResult(path, person_id, None, f"{len(observations)} faces; use a photo of one person")
            problems = main.quality.problems(self.limits)
            if problems:
                return PhotoResult(path, person_id, None, "; ".join(problems), main)
        return PhotoResult(path, person_id, self.embed([main])[0], None, main)


def enrol_people(
    engine: FaceEngine, people: dict[str, list[Path]], *, strict: bool = False, progress: bool = True
) -> list[PhotoResult]:
    """Enrol every photo of every person, with a progress bar."""
    total = sum(len(photos) for photos in people.values())
    results = []
    with Progress("enrolling photos", total, enabled=progress) as bar:
        for person_id, photos in people.items():
            for photo in photos:
                results.append(engine.enrol_photo(photo, person_id, strict=strict))
                bar.advance()
    return results


def gallery_from_results(results: list[PhotoResult], model_id: str = "", version: int = 1) -> Gallery:
    """A gallery of every usable template."""
    usable = [r for r in results if r.embedding is not None]
    embeddings = (
        np.stack([r.embedding for r in usable if r.embedding is not None]).astype(np.float32)
        if usable
        else np.zeros((0, 0), dtype=np.float32)
    )
    return Gallery([r.person_id for r in usable], embeddings, version=version, model_id=model_id)
