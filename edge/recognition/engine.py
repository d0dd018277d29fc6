"""Builds the face engine (detector + embedder) from a model pack of the manifest and a models directory."""

from __future__ import annotations

from pathlib import Path

from edge.recognition.detector import FaceDetector, ScrfdDetector, YunetDetector
from edge.recognition.embedder import FaceEmbedder
from edge.recognition.faces import FaceEngine
from edge.recognition.packs import load_manifest, require_pack, resolve_model_dir
from edge.recognition.quality import QualityLimits


def build_engine(
    pack: str | None = None,
    model_dir: Path | None = None,
    *,
    providers: list[str] | None = None,
    threads: int = 1,
    detector_input: int = 640,
    limits: QualityLimits | None = None,
    check_hash: bool = True,
) -> FaceEngine:
    """The engine for ``pack`` (None: the manifest's default) with weights from ``model_dir`` or $ROLLCALL_MODEL_DIR.

    Raises ``edge.recognition.packs.ModelError`` telling what is missing and how to get it.
    """
    files = require_pack(load_manifest(), pack, resolve_model_dir(model_dir), check_hash=check_hash)
    detector: FaceDetector
    if files.detector.family == "yunet":
        detector = YunetDetector(files.detector_path, input_size=detector_input)
    else:
        detector = ScrfdDetector(files.detector_path, input_size=detector_input, providers=providers, threads=threads)
    recogniser = files.recogniser
    embedder = FaceEmbedder(
        files.recogniser_path,
        mean=recogniser.mean,
        std=recogniser.std,
        rgb=recogniser.colour == "rgb",
        providers=providers,
        threads=threads,
    )
    embedder.model_id = f"{files.pack.name}:{recogniser.name}"
    return FaceEngine(detector, embedder, limits or QualityLimits())
