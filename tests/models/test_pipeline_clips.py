"""The pipeline on a rendered door clip with ground truth, and `rollcall bench edge` end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from edge.door.sources import open_source
from edge.recognition.faces import FaceEngine, enrol_people, gallery_from_results
from edge.recognition.pipeline import Pipeline
from rollcall.cli import main
from rollcall.tools.doorclip import GroundTruth, generate_door_clip
from rollcall.tools.doorclip_score import score_events


def test_door_clip_visits_are_reported_once_and_no_stranger_is_named(
    engine: FaceEngine, faces_dir: Path, tmp_path: Path
) -> None:
    video, truth_path, enrolment = generate_door_clip(faces_dir, tmp_path, seed=8, duration_s=45.0)
    truth = GroundTruth.from_json(truth_path, people_dir=faces_dir)
    pipeline = Pipeline(engine, gallery_from_results(enrol_people(engine, enrolment, progress=False)))
    events: list[dict[str, object]] = []
    with open_source(str(video)) as source:
        while (frame := source.read()) is not None:
            events.extend(e.as_dict() for e in pipeline.process(frame.image, frame.at, frame.pts_s))
    events.extend(e.as_dict() for e in pipeline.finish())
    score = score_events(truth, events)
    assert score["visits_total"] >= 3
    assert score["strangers_named"] == 0
    assert score["duplicate_seen"] == 0 and score["missing_left"] == 0 and score["missed"] == 0
    per_track = Counter((e["track"], e["type"]) for e in events)
    assert all(per_track[(track, "left")] == 1 for track, kind in per_track if kind == "seen")
    assert pipeline.stats.motion_skips > 0, "empty-door stretches must not run the detector"
    assert pipeline.stats.recognitions < pipeline.stats.face_frames / 5


def test_bench_edge_street_reports_both_sides(
    model_dir: Path, faces_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROLLCALL_MODEL_DIR", str(model_dir))
    assert main(["bench", "edge", "--clip", "street", "--faces", str(faces_dir), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"ours_fps", "baseline_fps", "ratio", "rec_calls_per_face_frame", "identity_accuracy", "rss_mb"} <= set(
        figures
    )
    assert figures["baseline_rec_calls_per_face_frame"] == 1.0  # the baseline embeds every face of every frame
    assert figures["rec_calls_per_face_frame"] < 0.2
    assert figures["identity_accuracy"] >= figures["baseline_identity_accuracy"] - 1e-9
