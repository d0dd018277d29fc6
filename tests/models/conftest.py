"""Fixtures that build the real face engine once per session and enrol the real photo folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.recognition.detector import ScrfdDetector
from edge.recognition.embedder import FaceEmbedder
from edge.recognition.faces import FaceEngine, PhotoResult, enrol_people
from edge.recognition.photos import people_folders


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/models runs real models: mark it so."""
    for item in items:
        if "tests/models/" in str(item.path):
            item.add_marker(pytest.mark.models)


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> FaceEngine:
    """det_500m + MobileFaceNet, the default pack."""
    return FaceEngine(ScrfdDetector(model_dir / "det_500m.onnx"), FaceEmbedder(model_dir / "MobileFaceNet.onnx"))


@pytest.fixture(scope="session")
def enrolled(engine: FaceEngine, faces_dir: Path) -> list[PhotoResult]:
    """One template per photo of every identity (largest face)."""
    return enrol_people(engine, people_folders(faces_dir), progress=False)
