"""``rollcall bench edge``: our pipeline against the naive detect-and-embed-every-frame baseline, in one run.

Both sides use the same engine objects (same models, input size and thread budget) on the same decoded frames.
Decoding is done before the clock starts for either side (a Pi camera hands over raw frames), so the figures
compare recognition work only. The baseline is what insightface's FaceAnalysis does per frame: detect, then align
and embed every face, then match; it has no motion gate, no tracks and no votes.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from edge.protocol.progress import Progress
from edge.recognition.engine import build_engine
from edge.recognition.faces import FaceEngine, enrol_people, gallery_from_results
from edge.recognition.gallery import Gallery, MatchPolicy
from edge.recognition.packs import ModelError
from edge.recognition.photos import people_folders
from edge.recognition.pipeline import Pipeline
from edge.recognition.tracker import Box, associate, iou_matrix
from rollcall.bench.runner import Benchmark, Figures
from rollcall.tools.doorclip import GroundTruth, add_sensor_noise, door_background, generate_door_clip
from rollcall.tools.doorclip_score import score_events

Image = npt.NDArray[np.uint8]
STREET_CLIP = Path("_videos") / "facenet-pytorch_video.mp4"


def _frames(video: Path) -> Iterator[Image]:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open clip {video}")
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield np.asarray(image, dtype=np.uint8)
    finally:
        capture.release()


@dataclass
class SideResult:
    """What one side did over the clip."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    frames: int = 0
    recognitions: int = 0
    face_frames: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    boxes: list[dict[int, tuple[Box, str | None]]] = field(default_factory=list)
    """Per frame: track id -> (box, decided identity or None) — for agreement on the street clip."""

    @property
    def fps(self) -> float:
        """Frames per second of recognition work."""
        return self.frames / self.seconds if self.seconds else 0.0


def _run_ours(engine: FaceEngine, gallery: Gallery, video: Path, fps: float, start: datetime) -> SideResult:
    pipeline = Pipeline(engine, gallery, policy=MatchPolicy())
    result = SideResult()
    embed_before = engine.embedder.calls
    for index, image in enumerate(_frames(video)):
        pts = index / fps
        wall, cpu = time.perf_counter(), time.process_time()
        events = pipeline.process(image, start + timedelta(seconds=pts), pts)
        result.seconds += time.perf_counter() - wall
        result.cpu_seconds += time.process_time() - cpu
        result.frames += 1
        result.events.extend(e.as_dict() for e in events)
        result.boxes.append({t.id: (t.box, t.person_id if t.decided else "?") for t in pipeline.tracks})
    result.events.extend(e.as_dict() for e in pipeline.finish())
    result.recognitions = engine.embedder.calls - embed_before
    result.face_frames = pipeline.stats.face_frames
    return result


def _run_baseline(engine: FaceEngine, gallery: Gallery, video: Path, fps: float, min_iou: float) -> SideResult:
    """Detect, embed and match every face of every frame; tracks are built afterwards, for scoring only."""
    policy = MatchPolicy()
    result = SideResult()
    per_frame: list[list[tuple[Box, str | None]]] = []
    embed_before = engine.embedder.calls
    for image in _frames(video):
        wall, cpu = time.perf_counter(), time.process_time()
        observations = engine.observe(image)
        matches = gallery.match_many(engine.embed(observations), policy) if observations else []
        result.seconds += time.perf_counter() - wall
        result.cpu_seconds += time.process_time() - cpu
        result.frames += 1
        result.face_frames += len(observations)
        per_frame.append([(o.detection.box, m.person_id) for o, m in zip(observations, matches, strict=True)])
    result.recognitions = engine.embedder.calls - embed_before
    result.events, result.boxes = _offline_tracks(per_frame, fps, min_iou)
    return result


def _offline_tracks(
    per_frame: list[list[tuple[Box, str | None]]], fps: float, min_iou: float, lost_frames: int = 10
) -> tuple[list[dict[str, Any]], list[dict[int, tuple[Box, str | None]]]]:
    """IoU tracks over the baseline's per-frame matches, each named by the majority of its frames."""
    open_tracks: dict[int, dict[str, Any]] = {}
    finished: list[dict[str, Any]] = []
    next_id = 1
    assignment: list[dict[int, Box]] = []
    for index, faces in enumerate(per_frame):
        ids = list(open_tracks)
        pairs, _, new = associate([open_tracks[i]["box"] for i in ids], [box for box, _ in faces], min_iou)
        frame_boxes: dict[int, Box] = {}
        for track_index, face_index in pairs:
            track = open_tracks[ids[track_index]]
            track["box"], track["last"] = faces[face_index][0], index
            track["votes"].append(faces[face_index][1])
            frame_boxes[ids[track_index]] = faces[face_index][0]
        for face_index in new:
            open_tracks[next_id] = {
                "id": next_id,
                "box": faces[face_index][0],
                "first": index,
                "last": index,
                "votes": [faces[face_index][1]],
            }
            frame_boxes[next_id] = faces[face_index][0]
            next_id += 1
        for track_id in [i for i, t in open_tracks.items() if index - t["last"] > lost_frames]:
            finished.append(open_tracks.pop(track_id))
        assignment.append(frame_boxes)
    finished.extend(open_tracks.values())
    events: list[dict[str, Any]] = []
    names: dict[int, str | None] = {}
    for track in finished:
        if len(track["votes"]) < 3:
            continue  # a flicker, not a face anyone would report
        majority = Counter(track["votes"]).most_common(1)[0][0]
        names[track["id"]] = majority
        events.append({"type": "seen", "pts_s": track["first"] / fps, "track": track["id"], "person_id": majority})
        events.append({"type": "left", "pts_s": track["last"] / fps, "track": track["id"], "person_id": majority})
    boxes = [{i: (b, names.get(i)) for i, b in frame.items() if i in names} for frame in assignment]
    return events, boxes


def _agreement(ours: SideResult, baseline: SideResult) -> float:
    """Share of our decided tracks whose identity equals the baseline's majority on the track it overlaps most."""
    decided: dict[int, str | None] = {}
    overlap: dict[int, Counter[tuple[int, str | None]]] = {}
    for our_frame, base_frame in zip(ours.boxes, baseline.boxes, strict=False):
        our_ids = [i for i, (_, name) in our_frame.items() if name != "?"]
        base_ids = list(base_frame)
        if not our_ids or not base_ids:
            continue
        overlaps = iou_matrix([our_frame[i][0] for i in our_ids], [base_frame[j][0] for j in base_ids])
        for row, our_id in enumerate(our_ids):
            decided[our_id] = our_frame[our_id][1]
            best = int(np.argmax(overlaps[row]))
            if overlaps[row, best] >= 0.3:
                overlap.setdefault(our_id, Counter())[(base_ids[best], base_frame[base_ids[best]][1])] += 1
    compared = [tid for tid in decided if tid in overlap]
    if not compared:
        return 1.0
    agree = sum(decided[tid] == overlap[tid].most_common(1)[0][0][1] for tid in compared)
    return agree / len(compared)


def _empty_door_cpu(engine: FaceEngine, gallery: Gallery, frames: int = 100, fps: float = 10.0) -> float:
    """Percent of one core the pipeline needs for an empty door (background + sensor noise) at ``fps``."""
    pipeline = Pipeline(engine, gallery)
    background = door_background(1280, 720, seed=3)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    images = [add_sensor_noise(background, 5, index) for index in range(20)]
    cpu = time.process_time()
    for index in range(frames):
        pipeline.process(images[index % len(images)], start + timedelta(seconds=index / fps), index / fps)
    return 100.0 * (time.process_time() - cpu) / frames * fps


def bench_edge(
    clip: Literal["door", "street"],
    faces_dir: Path,
    engine_factory: Callable[[], FaceEngine],
    *,
    seed: int = 7,
    duration_s: float = 90.0,
    workdir: Path | None = None,
    progress: bool = True,
) -> dict[str, float | int]:
    """Run both sides on the chosen clip and return the figures."""
    engine = engine_factory()
    start = datetime(2026, 11, 21, 8, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="rollcall-bench-") as scratch:
        folder = workdir or Path(scratch)
        truth: GroundTruth | None = None
        if clip == "door":
            people = people_folders(faces_dir)
            boxes = {}
            with Progress("finding faces for the clip", sum(len(p) for p in people.values()), enabled=progress) as bar:
                for photos in people.values():
                    for photo in photos:
                        image = cv2.imread(str(photo))
                        found = engine.detector.detect(np.asarray(image, dtype=np.uint8)) if image is not None else []
                        if found:
                            boxes[photo] = max(found, key=lambda d: d.area).box
                        bar.advance()
            with Progress("rendering door clip", int(duration_s * 10), enabled=progress) as bar:
                video, truth_path, enrolment = generate_door_clip(
                    faces_dir,
                    folder,
                    seed=seed,
                    duration_s=duration_s,
                    face_boxes=boxes,
                    # Sites enrol several photos per person; two where a third is left for the walk-up.
                    enrol_photos_per_person=2,
                    progress=lambda done, total: bar.advance(done - bar.done),
                )
            truth = GroundTruth.from_json(truth_path, people_dir=faces_dir)
            fps: float = float(truth.fps)
        else:
            video = faces_dir / STREET_CLIP
            enrolment = people_folders(faces_dir)
            capture = cv2.VideoCapture(str(video))
            fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
            capture.release()
        gallery = gallery_from_results(enrol_people(engine, enrolment, progress=progress))
        ours = _run_ours(engine, gallery, video, fps, start)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        baseline = _run_baseline(engine, gallery, video, fps, Pipeline(engine, gallery).settings.min_iou)
        empty_cpu = _empty_door_cpu(engine, gallery)
    if truth is not None:
        ours_score, base_score = score_events(truth, ours.events), score_events(truth, baseline.events)
        identity, base_identity = float(ours_score["identity_accuracy"]), float(base_score["identity_accuracy"])
        strangers_named = int(ours_score["strangers_named"])
    else:
        identity, base_identity, strangers_named = _agreement(ours, baseline), 1.0, 0
    return {
        "ours_fps": round(ours.fps, 1),
        "baseline_fps": round(baseline.fps, 1),
        "ratio": round(ours.fps / baseline.fps, 2) if baseline.fps else 0.0,
        "rec_calls_per_face_frame": round(ours.recognitions / max(1, ours.face_frames), 4),
        "baseline_rec_calls_per_face_frame": round(baseline.recognitions / max(1, baseline.face_frames), 4),
        "identity_accuracy": round(identity, 4),
        "baseline_identity_accuracy": round(base_identity, 4),
        "strangers_named": strangers_named,
        "cpu_s_per_frame": round(ours.cpu_seconds / max(1, ours.frames), 5),
        "baseline_cpu_s_per_frame": round(baseline.cpu_seconds / max(1, baseline.frames), 5),
        "empty_door_cpu_percent_at_10fps": round(empty_cpu, 2),
        "frames": ours.frames,
        "rss_mb": round(rss_mb, 1),
    }


def _faces_dir(args: argparse.Namespace) -> Path | None:
    return args.faces or (Path(os.environ["ROLLCALL_FACES_DIR"]) if os.environ.get("ROLLCALL_FACES_DIR") else None)


def _check(args: argparse.Namespace) -> str | None:
    faces = _faces_dir(args)
    if faces is None or not faces.is_dir():
        return "rollcall bench edge: set --faces or ROLLCALL_FACES_DIR to a folder of photo folders"
    try:
        build_engine(args.pack, args.model_dir, threads=args.threads)  # fail early, with advice, if models are missing
    except ModelError as exc:
        return f"rollcall bench edge: {exc}"
    return None


def _measure(args: argparse.Namespace) -> Figures:
    faces = _faces_dir(args)
    assert faces is not None  # _check ran first
    return bench_edge(
        args.clip,
        faces,
        lambda: build_engine(args.pack, args.model_dir, threads=args.threads),
        seed=args.seed,
        duration_s=args.duration,
    )


def _report(figures: Figures, args: argparse.Namespace) -> list[str]:
    return [
        f"  ours     : {figures['ours_fps']:>8.1f} frames/s, {figures['cpu_s_per_frame'] * 1000:.2f} ms CPU/frame, "
        f"{figures['rec_calls_per_face_frame']:.3f} recognitions per face-frame",
        f"  baseline : {figures['baseline_fps']:>8.1f} frames/s, "
        f"{figures['baseline_cpu_s_per_frame'] * 1000:.2f} ms CPU/frame, "
        f"{figures['baseline_rec_calls_per_face_frame']:.3f} recognitions per face-frame",
        f"  ratio    : {figures['ratio']:.2f}x",
        f"  identity : ours {figures['identity_accuracy']:.3f}, baseline {figures['baseline_identity_accuracy']:.3f}"
        f" ({'ground truth' if args.clip == 'door' else 'agreement with the baseline per track'})",
        f"  empty door at 10 fps: {figures['empty_door_cpu_percent_at_10fps']:.1f} % of one core; "
        f"peak RSS {figures['rss_mb']:.0f} MB",
    ]


BENCHMARK = Benchmark(
    headline=lambda args: (
        f"bench edge: {args.clip} clip, pack {args.pack or 'default'}, {args.threads} thread(s) each side"
    ),
    measure=_measure,
    report=_report,
    check=_check,
)
