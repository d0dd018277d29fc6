"""`rollcall edge eval` and `rollcall edge replay` end to end on the real models, photos and street clip."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import pytest

from rollcall.cli import main


@pytest.fixture
def with_models(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$ROLLCALL_MODEL_DIR set for the command under test."""
    monkeypatch.setenv("ROLLCALL_MODEL_DIR", str(model_dir))
    return model_dir


def test_eval_prints_the_figures_and_a_json_line(
    with_models: Path, faces_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["edge", "eval", "--people", str(faces_dir), "--json", "--splits", "3"]) == 0
    captured = capsys.readouterr()
    figures = json.loads(captured.out.strip().splitlines()[-1])
    assert {"rank1", "tar_at_far_1e-3", "stranger_reject_rate", "identities", "photos"} <= set(figures)
    assert figures["rank1"] >= 0.96 and figures["tar_at_far_1e-3"] >= 0.90
    assert figures["stranger_reject_rate"] >= 0.95
    assert "rank-1" in captured.out
    assert "enrolling photos" in captured.err  # progress is shown


def test_eval_without_models_says_how_to_get_them(
    faces_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ROLLCALL_MODEL_DIR", raising=False)
    assert main(["edge", "eval", "--people", str(faces_dir)]) == 2
    assert "ROLLCALL_MODEL_DIR" in capsys.readouterr().err


def test_replay_of_the_street_clip_names_nobody(
    with_models: Path, faces_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotated = tmp_path / "street.mp4"
    clip = faces_dir / "_videos" / "facenet-pytorch_video.mp4"
    assert main(["edge", "replay", str(clip), "--people", str(faces_dir), "--annotate", str(annotated)]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert events, "pedestrians walk toward the camera: some faces must be decided"
    assert all(e["person_id"] is None for e in events), "nobody in the street clip is enrolled"
    kinds = Counter((e["track"], e["type"]) for e in events)
    tracks = {e["track"] for e in events}
    assert all(kinds[(t, "seen")] == 1 and kinds[(t, "left")] == 1 for t in tracks)
    seen = {e["track"]: e for e in events if e["type"] == "seen"}
    assert all(e["snapshot_bytes"] > 0 for e in seen.values())
    stats = captured.err.strip().splitlines()[-1]
    numbers = dict(part.rsplit(" ", 1) for part in stats.split(", ") if not part.startswith("peak"))
    assert int(numbers["recognitions"]) <= 0.1 * int(numbers["face-frames"])
    video = cv2.VideoCapture(str(annotated))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == int(numbers["frames"]) == 105
    video.release()


def test_replay_of_a_missing_source_names_it(
    with_models: Path, faces_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.mp4"
    assert main(["edge", "replay", str(missing), "--people", str(faces_dir)]) == 2
    assert "nowhere.mp4" in capsys.readouterr().err
