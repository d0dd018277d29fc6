"""The door-clip generator: visit plans, rendered clips against their ground truth, and event scoring."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edge.recognition.photos import people_folders
from rollcall.tools.doorclip import (
    FLICKER,
    NOISE_SIGMA,
    GroundTruth,
    Visit,
    add_sensor_noise,
    door_background,
    generate_door_clip,
    plan_visits,
    render_clip,
)
from rollcall.tools.doorclip_score import score_events

W, H, FPS = 320, 180, 5
Frame = npt.NDArray[np.uint8]


def _photo(path: Path, colour: tuple[int, int, int], face: tuple[int, int, int] = (150, 180, 220)) -> Path:
    """A portrait-like picture: coloured background, a skin-toned ellipse face with dark eyes and hair."""
    image = np.full((200, 160, 3), colour, dtype=np.uint8)
    cv2.ellipse(image, (80, 62), (44, 30), 0.0, 180.0, 360.0, (30, 30, 40), -1)  # hair
    cv2.ellipse(image, (80, 80), (36, 46), 0.0, 0.0, 360.0, face, -1)
    for x in (66, 94):
        cv2.circle(image, (x, 72), 5, (40, 30, 30), -1)
    cv2.ellipse(image, (80, 104), (12, 5), 0.0, 0.0, 180.0, (60, 60, 150), 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def _people(root: Path, counts: dict[str, int]) -> dict[str, list[Path]]:
    """Folders of synthetic photos, one per identity, each identity with its own background colour."""
    people: dict[str, list[Path]] = {}
    for k, (name, count) in enumerate(sorted(counts.items())):
        colour = (40 + 37 * k % 200, 90 + 53 * k % 160, 60 + 71 * k % 190)
        people[name] = [_photo(root / name / f"p{i}.png", colour) for i in range(count)]
    return people


@pytest.fixture
def people_dir(tmp_path: Path) -> Path:
    root = tmp_path / "people"
    _people(root, {"alice": 3, "bob": 2, "carol": 2, "dave": 1, "erin": 3, "frank": 2})
    _photo(root / "_groups" / "group.png", (0, 0, 0))  # not an identity
    return root


def _read_frames(path: Path) -> list[Frame]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"cannot open {path}"
    frames: list[Frame] = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(np.asarray(frame, dtype=np.uint8))
    capture.release()
    return frames


def _thumb(image: Frame) -> npt.NDArray[np.int16]:
    """Grey thumbnail like the pipeline's motion gate compares (8x8 pixel cells)."""
    small = cv2.resize(image, (W // 8, H // 8), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), dtype=np.int16)


def _groups(visits: list[Visit]) -> list[tuple[float, float]]:
    """Stretches with somebody in view (overlapping visits merged)."""
    merged: list[tuple[float, float]] = []
    for v in sorted(visits, key=lambda v: v.enter_s):
        if merged and v.enter_s < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], v.leave_s))
        else:
            merged.append((v.enter_s, v.leave_s))
    return merged


# --- planning ----------------------------------------------------------------------------------------------------


def test_plan_is_deterministic_for_a_seed_and_differs_for_another(tmp_path: Path) -> None:
    people = _people(tmp_path, {"a": 3, "b": 3, "c": 3, "d": 3})
    first = plan_visits(people, seed=1, duration_s=120.0)
    assert first == plan_visits(people, seed=1, duration_s=120.0)
    assert first != plan_visits(people, seed=2, duration_s=120.0)
    assert len(first) >= 5


@pytest.mark.parametrize("seed", range(12))
def test_plan_timing_rules(tmp_path: Path, seed: int) -> None:
    people = _people(tmp_path, {"a": 2, "b": 2, "c": 2, "d": 2, "e": 2})
    duration = 150.0
    visits = plan_visits(people, seed=seed, duration_s=duration)
    assert visits == sorted(visits, key=lambda v: v.enter_s)
    for v in visits:
        assert 4.0 <= v.leave_s - v.enter_s <= 9.0 + 1e-9
        assert v.lane in (0, 1)
    # Never more than two in view; two at once are in different lanes and are different people.
    for a, b in itertools.combinations(visits, 2):
        if a.enter_s < b.leave_s and b.enter_s < a.leave_s:
            assert a.lane != b.lane and a.photo.parent != b.photo.parent
    for a, b, c in itertools.combinations(visits, 3):
        assert not (max(a.enter_s, b.enter_s, c.enter_s) < min(a.leave_s, b.leave_s, c.leave_s))
    # Empty door at the start, at the end and between groups, 3-12 s each.
    groups = _groups(visits)
    assert 3.0 <= groups[0][0] <= 12.0
    assert groups[-1][1] <= duration - 3.0
    for (_, end), (start, _) in itertools.pairwise(groups):
        assert 3.0 <= start - end <= 12.0 + 1e-9


def test_plan_has_both_single_visits_and_overlapping_pairs(tmp_path: Path) -> None:
    people = _people(tmp_path, {"a": 2, "b": 2, "c": 2, "d": 2})
    sizes = [
        sum(1 for v in visits if g[0] <= v.enter_s < g[1])
        for seed in range(6)
        for visits in [plan_visits(people, seed=seed, duration_s=200.0)]
        for g in _groups(visits)
    ]
    assert set(sizes) == {1, 2}


def test_everyone_visits_once_before_anyone_comes_back(tmp_path: Path) -> None:
    people = _people(tmp_path, {name: 2 for name in "abcdef"})
    visits = plan_visits(people, seed=5, duration_s=300.0, pair_share=0.0)
    assert len(visits) > 6
    assert sorted(str(v.person_id) for v in visits[:6]) == sorted("abcdef")


def test_enrolment_photos_are_not_shown_and_people_without_another_photo_stay_away(tmp_path: Path) -> None:
    people = _people(tmp_path, {"a": 3, "b": 2, "solo": 1})
    enrolment = {people["a"][0], people["b"][0], people["solo"][0]}
    visits = plan_visits(people, seed=3, duration_s=200.0, exclude=enrolment)
    assert visits
    assert not {v.photo for v in visits} & enrolment
    assert {v.person_id for v in visits} == {"a", "b"}
    assert {v.photo for v in visits if v.person_id == "a"} == set(people["a"][1:])


def test_strangers_visit_without_an_identity(tmp_path: Path) -> None:
    known = _people(tmp_path / "known", {"a": 2, "b": 2})
    strangers = _people(tmp_path / "held_out", {"x": 1, "y": 2})
    visits = plan_visits(known, seed=4, duration_s=200.0, strangers=strangers, exclude={known["a"][0]})
    stranger_photos = {p for photos in strangers.values() for p in photos}
    assert {v.photo for v in visits if v.person_id is None} <= stranger_photos
    assert {v.photo.parent.name for v in visits if v.person_id is None} == {"x", "y"}
    assert {v.person_id for v in visits} == {"a", "b", None}
    assert all(v.photo.parent.name == v.person_id for v in visits if v.person_id is not None)


def test_plan_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    people = _people(tmp_path, {"a": 1})
    with pytest.raises(ValueError, match="too short"):
        plan_visits(people, seed=1, duration_s=9.0)
    with pytest.raises(ValueError, match="nobody can visit"):
        plan_visits(people, seed=1, duration_s=60.0, exclude=set(people["a"]))
    with pytest.raises(ValueError, match="both a known person and a stranger"):
        plan_visits(people, seed=1, duration_s=60.0, strangers=people)
    # The shortest clip that fits still holds exactly one visit between two empty stretches.
    (only,) = plan_visits(people, seed=1, duration_s=10.0)
    assert only.enter_s == pytest.approx(3.0) and only.leave_s == pytest.approx(7.0)


def test_people_folders_skip_underscore_folders(people_dir: Path) -> None:
    people = people_folders(people_dir)
    assert sorted(people) == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert [p.name for p in people["alice"]] == ["p0.png", "p1.png", "p2.png"]
    with pytest.raises(FileNotFoundError):
        people_folders(people_dir / "missing")


# --- rendering ---------------------------------------------------------------------------------------------------


def _short_clip(people_dir: Path, out: Path, **kwargs: Any) -> GroundTruth:
    people = people_folders(people_dir)
    visits = plan_visits(people, seed=11, duration_s=15.0)
    return render_clip(visits, out, fps=FPS, width=W, height=H, seed=11, people_dir=people_dir, **kwargs)


def test_render_clip_writes_a_readable_video_and_a_truth_that_round_trips(people_dir: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    truth = _short_clip(
        people_dir, tmp_path / "out" / "door.mp4", duration_s=15.0, progress=lambda d, t: calls.append((d, t))
    )
    video = tmp_path / "out" / truth.video
    frames = _read_frames(video)
    assert truth.frames == 75 and truth.duration_s == 15.0
    assert len(frames) == truth.frames
    assert {f.shape for f in frames} == {(H, W, 3)}
    assert calls == [(i, 75) for i in range(1, 76)]

    path = tmp_path / "door.truth.json"
    truth.to_json(path)
    document = json.loads(path.read_text())
    assert {"fps", "width", "height", "frames", "visits"} <= set(document)
    assert all(set(v) >= {"person_id", "photo", "enter_s", "leave_s"} for v in document["visits"])
    assert all(v["photo"].count("/") == 1 and not v["photo"].startswith("/") for v in document["visits"])
    assert GroundTruth.from_json(path, people_dir) == truth
    relative = GroundTruth.from_json(path)
    assert [v.photo for v in relative.visits] == [v.photo.relative_to(people_dir) for v in truth.visits]


def test_frames_match_the_ground_truth(people_dir: Path, tmp_path: Path) -> None:
    truth = _short_clip(people_dir, tmp_path / "door.mp4", duration_s=15.0)
    frames = _read_frames(tmp_path / truth.video)
    background = _thumb(door_background(W, H, 11))
    empty = [i for i in range(truth.frames) if not truth.in_view(truth.frame_time(i))]
    busy = [i for i in range(truth.frames) if truth.in_view(truth.frame_time(i))]
    assert len(empty) >= 5 * FPS and len(busy) >= 3 * FPS
    for i in empty:
        # Only noise on an empty door: the thumbnail stays on the background.
        assert np.abs(_thumb(frames[i]) - background).max() <= 8, f"frame {i} should show an empty door"
    for i in busy:
        assert np.abs(_thumb(frames[i]) - background).max() >= 30, f"frame {i} should show {truth.in_view(i / FPS)}"
    # The noise is there, independent per frame, and modest.
    a, b = (frames[i].astype(np.int16) for i in empty[:2])
    assert 0.3 < float(np.abs(a - b).mean()) < 6.0


def test_sensor_noise_is_modest_independent_per_frame_and_seeded() -> None:
    flat = np.full((H, W, 3), 128, dtype=np.uint8)
    one, two = add_sensor_noise(flat, 3, 0), add_sensor_noise(flat, 3, 1)
    assert np.array_equal(one, add_sensor_noise(flat, 3, 0))
    assert not np.array_equal(one, add_sensor_noise(flat, 4, 0))
    for frame in (one, two):
        values = frame.astype(np.float64)
        assert abs(values.mean() - 128) <= 128 * 2.5 * FLICKER + 0.5  # slight flicker only
        assert values.std() == pytest.approx(NOISE_SIGMA, rel=0.1)
    a = one.astype(np.float64) - one.mean()
    b = two.astype(np.float64) - two.mean()
    assert abs(float((a * b).mean() / (a.std() * b.std()))) < 0.05  # independent from frame to frame


def test_visitors_grow_as_they_walk_up(people_dir: Path, tmp_path: Path) -> None:
    alice = people_folders(people_dir)["alice"][1]
    visit = Visit("alice", alice, 1.0, 9.0, 0)
    truth = render_clip([visit], tmp_path / "door.mp4", fps=FPS, width=W, height=H, seed=2, duration_s=12.0)
    frames = _read_frames(tmp_path / truth.video)
    background = door_background(W, H, 2).astype(np.int16)

    def changed(i: int) -> int:
        diff = np.abs(frames[i].astype(np.int16) - background).max(axis=2)
        return int(np.count_nonzero(cv2.medianBlur(np.asarray(diff > 40, dtype=np.uint8), 3)))

    first, closest = changed(1 * FPS), changed(5 * FPS)  # entering, lingering near the camera
    assert first > 0
    assert closest > 8 * first  # face height 60 -> 220+ px at 720 lines: about (220/60)^2 = 13x the area


def test_rendering_is_deterministic_for_a_seed(people_dir: Path, tmp_path: Path) -> None:
    one = _short_clip(people_dir, tmp_path / "one.mp4", duration_s=10.0)
    two = _short_clip(people_dir, tmp_path / "two.mp4", duration_s=10.0)
    assert one.visits == two.visits and one.frames == two.frames
    first, second = _read_frames(tmp_path / "one.mp4"), _read_frames(tmp_path / "two.mp4")
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))


def test_face_boxes_choose_the_crop(tmp_path: Path) -> None:
    photo = tmp_path / "people" / "zed" / "split.png"
    photo.parent.mkdir(parents=True)
    image = np.zeros((400, 400, 3), dtype=np.uint8)
    image[:, :200] = (0, 0, 255)  # red left half
    image[:, 200:] = (255, 0, 0)  # blue right half
    assert cv2.imwrite(str(photo), image)
    visit = Visit("zed", photo, 0.0, 6.0, 1)

    def colour_at_linger(name: str, box: tuple[float, float, float, float]) -> npt.NDArray[np.float64]:
        out = tmp_path / f"{name}.mp4"
        boxes = {photo: box}
        render_clip([visit], out, fps=FPS, width=W, height=H, seed=1, duration_s=8.0, face_boxes=boxes)
        frame = _read_frames(out)[3 * FPS].astype(np.int16)
        changed = np.abs(frame - door_background(W, H, 1).astype(np.int16)).max(axis=2) > 60
        return np.asarray(frame[changed].mean(axis=0), dtype=np.float64)

    blue = colour_at_linger("blue", (250.0, 150.0, 350.0, 250.0))  # a "face" inside the blue half
    assert blue[0] > 150 and blue[2] < 80
    red = colour_at_linger("red", (50.0, 150.0, 150.0, 250.0))
    assert red[2] > 150 and red[0] < 80


def test_render_falls_back_to_mjpg_when_mp4v_is_missing(
    people_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = cv2.VideoWriter
    mp4v = real.fourcc(*"mp4v")

    class WithoutMp4v:
        fourcc = staticmethod(real.fourcc)

        def __new__(cls, path: str, fourcc: int, fps: float, size: tuple[int, int]) -> Any:
            return real() if fourcc == mp4v else real(path, fourcc, fps, size)  # real() is never opened

    monkeypatch.setattr("rollcall.tools.doorclip.cv2.VideoWriter", WithoutMp4v)
    with caplog.at_level("WARNING", logger="rollcall.doorclip"):
        truth = _short_clip(people_dir, tmp_path / "door.mp4", duration_s=8.0)
    assert truth.video == "door.avi" and not (tmp_path / "door.mp4").exists()
    assert len(_read_frames(tmp_path / "door.avi")) == truth.frames == 40
    assert "Motion-JPEG" in caplog.text
    # The truth of a clip cut short keeps only what was shown.
    assert truth.visits and all(v.enter_s < 8.0 and v.leave_s <= 8.0 for v in truth.visits)
    assert max(v.leave_s for v in truth.visits) == 8.0


def test_render_rejects_bad_visits(people_dir: Path, tmp_path: Path) -> None:
    photo = people_folders(people_dir)["alice"][0]
    with pytest.raises(ValueError, match="lane"):
        render_clip([Visit("alice", photo, 1.0, 5.0, 2)], tmp_path / "x.mp4", width=W, height=H)
    with pytest.raises(ValueError, match="cannot read photo"):
        render_clip([Visit("alice", tmp_path / "nope.jpg", 1.0, 5.0, 0)], tmp_path / "x.mp4", width=W, height=H)


def test_generate_door_clip_splits_enrols_and_renders(people_dir: Path, tmp_path: Path) -> None:
    video, truth_path, enrolment = generate_door_clip(
        people_dir, tmp_path / "clip", seed=3, duration_s=40.0, fps=FPS, width=W, height=H, stranger_share=0.34
    )
    assert video == tmp_path / "clip" / "door.mp4" and truth_path == tmp_path / "clip" / "door.truth.json"
    people = people_folders(people_dir)
    assert len(enrolment) == 4  # 6 identities, 2 of them held out as strangers
    assert all(photos == people[name][:1] for name, photos in enrolment.items())
    truth = GroundTruth.from_json(truth_path, people_dir)
    assert len(_read_frames(video)) == truth.frames == 200
    enrolled = {p for photos in enrolment.values() for p in photos}
    assert truth.visits and not {v.photo for v in truth.visits} & enrolled
    for v in truth.visits:
        if v.person_id is None:
            assert v.photo.parent.name not in enrolment
        else:
            assert v.person_id in enrolment and v.photo.parent.name == v.person_id
    again = generate_door_clip(
        people_dir, tmp_path / "again", seed=3, duration_s=40.0, fps=FPS, width=W, height=H, stranger_share=0.34
    )
    assert again[2] == enrolment
    assert json.loads(again[1].read_text()) == json.loads(truth_path.read_text())


def test_a_known_person_with_one_photo_is_enrolled_but_never_visits(people_dir: Path, tmp_path: Path) -> None:
    _, truth_path, enrolment = generate_door_clip(
        people_dir, tmp_path, seed=1, duration_s=120.0, fps=1, width=W, height=H, stranger_share=0.0
    )
    truth = GroundTruth.from_json(truth_path, people_dir)
    assert set(enrolment) == {"alice", "bob", "carol", "dave", "erin", "frank"}
    visitors = {v.person_id for v in truth.visits}
    assert visitors == {"alice", "bob", "carol", "erin", "frank"}  # everyone else comes; no strangers without a share


# --- scoring -----------------------------------------------------------------------------------------------------

TRUTH = GroundTruth(
    fps=10,
    width=W,
    height=H,
    frames=500,
    duration_s=50.0,
    visits=[
        Visit("alice", Path("alice/1.jpg"), 5.0, 10.0, 0),
        Visit(None, Path("zed/1.jpg"), 20.0, 26.0, 1),
        Visit("bob", Path("bob/1.jpg"), 30.0, 36.0, 0),
        Visit("carol", Path("carol/1.jpg"), 32.0, 38.0, 1),
    ],
)


def _ev(kind: str, pts: float, track: int, person: str | None) -> dict[str, Any]:
    return {"type": kind, "pts_s": pts, "track": track, "person_id": person}


PERFECT = [
    _ev("seen", 6.0, 1, "alice"),
    _ev("left", 9.5, 1, "alice"),
    _ev("seen", 21.0, 2, None),
    _ev("left", 25.5, 2, None),
    _ev("seen", 32.5, 4, "carol"),  # the second visitor is recognised first
    _ev("seen", 33.0, 3, "bob"),
    _ev("left", 35.5, 3, "bob"),
    _ev("left", 37.5, 4, "carol"),
]

Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def _replace(index: int, event: dict[str, Any]) -> Edit:
    return lambda events: [event if i == index else e for i, e in enumerate(events)]


CASES: list[tuple[str, Edit, dict[str, int]]] = [
    ("perfect", lambda e: e, {"visits_correct": 4}),
    ("missed visit", lambda e: [x for x in e if x["track"] != 3], {"visits_correct": 3, "missed": 1}),
    ("wrong name", _replace(0, _ev("seen", 6.0, 1, "bob")), {"visits_correct": 3, "wrong_identity": 1}),
    (
        "stranger named",
        _replace(2, _ev("seen", 21.0, 2, "alice")),
        {"visits_correct": 3, "wrong_identity": 1, "strangers_named": 1},
    ),
    ("known face called unknown", _replace(0, _ev("seen", 6.0, 1, None)), {"visits_correct": 3, "wrong_identity": 1}),
    (
        "duplicate seen on a second track",
        lambda e: [*e, _ev("seen", 7.0, 9, "alice"), _ev("left", 8.0, 9, "alice")],
        {"visits_correct": 3, "duplicate_seen": 1},
    ),
    (
        "re-announced on the same track",
        lambda e: [*e, _ev("seen", 8.0, 1, "alice")],
        {"visits_correct": 3, "duplicate_seen": 1, "unmatched_events": 0},
    ),
    (
        "extra seen at an empty door",
        lambda e: [*e, _ev("seen", 15.0, 7, "bob")],
        {"visits_correct": 4, "unmatched_events": 1},
    ),
    ("left with no seen", lambda e: [*e, _ev("left", 15.0, 8, None)], {"visits_correct": 4, "unmatched_events": 1}),
    (
        "no left",
        lambda e: [x for x in e if x["track"] != 1 or x["type"] == "seen"],
        {"visits_correct": 3, "missing_left": 1},
    ),
    (
        "seen (and left) within the slack",
        lambda e: _replace(1, _ev("left", 11.45, 1, "alice"))(_replace(0, _ev("seen", 11.4, 1, "alice"))(e)),
        {"visits_correct": 4},
    ),
    (
        "seen after the slack",
        _replace(0, _ev("seen", 11.6, 1, "alice")),
        {"visits_correct": 3, "missed": 1, "unmatched_events": 2},
    ),
    (
        "seen before entering",
        _replace(0, _ev("seen", 4.5, 1, "alice")),
        {"visits_correct": 3, "missed": 1, "unmatched_events": 2},
    ),
    ("other event types", lambda e: [*e, {"type": "health", "pts_s": 1.0}], {"visits_correct": 4, "ignored_events": 1}),
    ("no events", lambda e: [], {"visits_correct": 0, "missed": 4}),
]


@pytest.mark.parametrize(("edit", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_score_events(edit: Edit, expected: dict[str, int]) -> None:
    report = score_events(TRUTH, edit([dict(e) for e in PERFECT]))
    defaults = {
        "visits_total": 4,
        "wrong_identity": 0,
        "strangers_named": 0,
        "missed": 0,
        "duplicate_seen": 0,
        "missing_left": 0,
        "unmatched_events": 0,
        "ignored_events": 0,
        "stranger_visits": 1,
    }
    assert {key: report[key] for key in [*defaults, "visits_correct"]} == {**defaults, **expected}
    assert report["identity_accuracy"] == pytest.approx(expected["visits_correct"] / 4)
    verdicts = [v["verdict"] for v in report["per_visit"]]
    assert len(verdicts) == 4
    # Every visit gets exactly one verdict.
    assert sum(report[k] for k in ("visits_correct", "missed", "wrong_identity", "duplicate_seen", "missing_left")) == 4


def test_score_events_credits_the_right_visitor_of_a_pair() -> None:
    swapped = [
        _ev("seen", 33.0, 3, "carol"),
        _ev("seen", 33.0, 4, "bob"),
        _ev("left", 37.0, 3, "x"),
        _ev("left", 35.0, 4, "x"),
    ]
    report = score_events(TRUTH, swapped)
    by_person = {v["person_id"]: v for v in report["per_visit"]}
    assert by_person["bob"]["verdict"] == by_person["carol"]["verdict"] == "correct"
    assert by_person["carol"]["seen"] == [{"pts_s": 33.0, "track": 3, "person_id": "carol"}]
    # Both named the same person: one is right, the other visit got a wrong name.
    both_bob = [
        _ev("seen", 33.0, 3, "bob"),
        _ev("seen", 33.1, 4, "bob"),
        _ev("left", 35, 3, "bob"),
        _ev("left", 37, 4, "bob"),
    ]
    report = score_events(TRUTH, both_bob)
    by_person = {v["person_id"]: v for v in report["per_visit"]}
    assert by_person["bob"]["verdict"] == "correct" and by_person["carol"]["verdict"] == "wrong_identity"


def test_score_events_of_a_clip_without_visits() -> None:
    empty = GroundTruth(fps=10, width=W, height=H, frames=100, duration_s=10.0, visits=[])
    report = score_events(empty, [_ev("seen", 1.0, 1, "alice")])
    assert report["visits_total"] == 0 and report["identity_accuracy"] == 0.0 and report["unmatched_events"] == 1


def test_ground_truth_in_view() -> None:
    assert TRUTH.in_view(4.99) == []
    assert TRUTH.in_view(5.0) == ["alice"]
    assert TRUTH.in_view(10.0) == []
    assert TRUTH.in_view(21.0) == [None]
    assert TRUTH.in_view(33.0) == ["bob", "carol"]


# --- real photos -------------------------------------------------------------------------------------------------


@pytest.mark.models
def test_door_clip_from_real_photos(tmp_path: Path) -> None:
    faces = os.environ.get("ROLLCALL_FACES_DIR")
    if not faces:
        pytest.fail("ROLLCALL_FACES_DIR is not set: point it at the face photo folders (CI: ../shared/faces)")
    people_dir = Path(faces)
    video, truth_path, enrolment = generate_door_clip(
        people_dir, tmp_path, seed=5, duration_s=24.0, fps=FPS, width=W, height=H
    )
    truth = GroundTruth.from_json(truth_path, people_dir)
    identities = set(people_folders(people_dir))
    assert set(enrolment) < identities
    assert truth.visits
    assert {v.person_id for v in truth.visits} <= set(enrolment) | {None}
    for v in truth.visits:
        assert v.photo.is_file()
        assert v.photo.parent.name in identities  # never _groups or _videos
        assert (v.person_id is None) == (v.photo.parent.name not in enrolment)
        assert v.photo not in enrolment.get(v.photo.parent.name, [])
    frames = _read_frames(video)
    assert len(frames) == truth.frames == 24 * FPS and frames[0].shape == (H, W, 3)
    background = _thumb(door_background(W, H, 5))
    busy = [i for i in range(truth.frames) if truth.in_view(i / FPS)]
    empty = [i for i in range(truth.frames) if not truth.in_view(i / FPS)]
    assert all(np.abs(_thumb(frames[i]) - background).max() <= 8 for i in empty)
    visible = [np.abs(_thumb(frames[i]) - background).max() >= 20 for i in busy]
    assert busy and sum(visible) >= 0.8 * len(busy)
