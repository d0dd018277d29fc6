"""The recognition pipeline: motion gate, detection, IoU tracks, quality gate, votes, gallery match, events.

It is pure with respect to time: every frame carries its own timestamp (``at``) and media time (``pts_s``), so a
replayed clip gives the same events as the live camera did and tests control time completely.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from edge.recognition.detector import Detection
from edge.recognition.faces import FaceEngine, FaceObservation
from edge.recognition.gallery import Gallery, MatchPolicy
from edge.recognition.tracker import Box, associate, associate_by_centre, predict_box

log = logging.getLogger("rollcall.pipeline")

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Every knob of the pipeline; defaults measured on the door and street clips (docs/recognition.md)."""

    motion_width: int = 96
    """Width of the grey thumbnail the motion gate compares."""
    motion_pixel_delta: int = 18
    """Grey-level change for a thumbnail pixel to count as changed."""
    motion_min_fraction: float = 0.002
    """Share of changed thumbnail pixels that wakes the detector."""
    idle_detect_interval_s: float = 5.0
    """Run the detector this often even when nothing moves (someone may have stepped in very slowly)."""
    search_detect_interval: int = 2
    """With nobody tracked but the picture changing, run the detector on every Nth frame (2 at 10 fps: a newcomer
    is found within 0.2 s, long before they reach the door)."""
    track_detect_interval: int = 2
    """While every face is tracked, run the detector on every Nth frame and predict the boxes in between."""
    detect_every_frame_until_decided: bool = False
    """Run the detector on every frame while a track is still undecided (faster decisions, more detector runs)."""
    min_iou: float = 0.25
    """Overlap for a detection to continue a track."""
    max_centre_shift: float = 1.0
    """Second chance for a track IoU could not match: a detection whose centre is within this many face widths."""
    min_hits: int = 2
    """Detections before a track is trusted enough to recognise."""
    lost_after_s: float = 1.0
    """A track unseen this long has ended."""
    rejoin_s: float = 3.0
    """A track that ends is held this long before its ``left`` goes out: if the same person (or, for unknown
    faces, the same face) is decided on a new track meanwhile, the visit continues under the old track id."""
    same_face_similarity: float = 0.45
    """Cosine between two unknown tracks' mean embeddings above which they are one stranger's visit."""
    votes_needed: int = 3
    """Agreeing recognitions that name a person."""
    max_attempts: int = 5
    """Recognitions of an undecided track at the full pace; after that, only new information earns another try."""
    unknown_votes: int = 4
    """Recognitions of a face at least ``unknown_min_px`` tall without a name before it is reported as unknown."""
    unknown_min_px: float = 80.0
    """Smaller faces may name someone but never count towards "unknown": far away, everyone scores low."""
    unknown_after_s: float = 2.5
    """...and the face must have been followed this long: someone walking up gets closer and easier to recognise."""
    min_attempts_to_report: int = 2
    """A track that ends undecided after this many recognitions of a face ``unknown_min_px`` tall is reported as an
    unknown face (smaller, farther faces that never came close are passers-by, not visits)."""
    better_face_ratio: float = 1.15
    """After max_attempts, try again on a face this much larger than the best one tried (new information)..."""
    retry_undecided_s: float = 1.0
    """...or when this long has passed since the last try."""
    attempt_every_frames: int = 2
    """Frames between recognitions of one track while it is still undecided."""
    recheck_interval_s: float = 5.0
    """Sparse re-check of a decided track."""
    snapshot_max_px: int = 160
    """Longer side of the JPEG face crop sent with an event."""


@dataclass(frozen=True, slots=True)
class FaceEvent:
    """A person (or unknown face) ``seen`` when a track is decided, ``left`` when it ends."""

    type: Literal["seen", "left"]
    at: datetime
    pts_s: float
    track: int
    person_id: str | None
    name: str | None
    score: float
    margin: float
    quality: float
    snapshot_jpeg: bytes | None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (without the image bytes)."""
        return {
            "type": self.type,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "pts_s": round(self.pts_s, 3),
            "track": self.track,
            "person_id": self.person_id,
            "name": self.name,
            "score": round(self.score, 4),
            "margin": round(self.margin, 4),
            "quality": round(self.quality, 3),
            "snapshot_bytes": len(self.snapshot_jpeg) if self.snapshot_jpeg else 0,
        }


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: Box
    previous_box: Box
    first_pts: float
    last_pts: float
    last_at: datetime
    hits: int = 1
    frames_since_attempt: int = 10**6
    votes: list[str | None] = field(default_factory=list)
    scores: list[tuple[str | None, float, float]] = field(default_factory=list)
    decided: bool = False
    person_id: str | None = None
    score: float = 0.0
    margin: float = 0.0
    last_check_pts: float = 0.0
    best_attempt_px: float = 0.0
    strong_attempts: int = 0
    recheck_disagreements: int = 0
    best_quality: float = -1.0
    best_crop: Image | None = None
    announced: bool = False
    embedding_sum: npt.NDArray[np.float32] | None = None

    def mean_embedding(self) -> npt.NDArray[np.float32] | None:
        """The unit mean of the embeddings taken on this track (None before the first recognition)."""
        if self.embedding_sum is None:
            return None
        norm = float(np.linalg.norm(self.embedding_sum))
        return (self.embedding_sum / norm).astype(np.float32) if norm > 0 else None


@dataclass
class PipelineStats:
    """Counters for benchmarks and health."""

    frames: int = 0
    detector_runs: int = 0
    motion_skips: int = 0
    predicted_frames: int = 0
    face_frames: int = 0
    recognitions: int = 0
    tracks: int = 0


class Pipeline:
    """Turns frames into face events. Not thread-safe: one pipeline per camera thread."""

    def __init__(
        self,
        engine: FaceEngine,
        gallery: Gallery,
        *,
        policy: MatchPolicy | None = None,
        settings: PipelineSettings | None = None,
    ) -> None:
        self.engine = engine
        self.gallery = gallery
        self.policy = policy or MatchPolicy()
        self.settings = settings or PipelineSettings()
        self.stats = PipelineStats()
        self.tracks: list[Track] = []
        self._ended: list[Track] = []  # named tracks waiting out rejoin_s before their `left`
        self._ids = itertools.count(1)
        self._background: npt.NDArray[np.int16] | None = None
        self._last_detect_pts = float("-inf")
        self._frames_since_detect = 0

    def replace_gallery(self, gallery: Gallery) -> None:
        """Swap in a new gallery (tracks already decided keep their names)."""
        self.gallery = gallery

    # --- motion gate ---------------------------------------------------------------------------------------------

    def _motion(self, image: Image) -> bool:
        height, width = image.shape[:2]
        thumb_w = self.settings.motion_width
        thumb_h = max(1, round(height * thumb_w / width))
        # Every 4th pixel first, then an area average: 7x cheaper than averaging the full frame (0.3 vs 2 ms at
        # 720p on this machine) and still smooths sensor noise; the gate runs on every frame, faces or not.
        step = max(1, min(4, width // (thumb_w * 2)))
        sampled = np.ascontiguousarray(image[::step, ::step])
        small = cv2.resize(sampled, (thumb_w, thumb_h), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        current = cv2.GaussianBlur(grey, (3, 3), 0).astype(np.int16)
        previous = self._background
        self._background = current
        if previous is None or previous.shape != current.shape:
            return True
        changed = np.count_nonzero(np.abs(current - previous) > self.settings.motion_pixel_delta)
        return bool(changed >= self.settings.motion_min_fraction * current.size)

    # --- per frame -----------------------------------------------------------------------------------------------

    def process(self, image: Image, at: datetime, pts_s: float) -> list[FaceEvent]:
        """Feed one frame; returns the events it completed (often none)."""
        self.stats.frames += 1
        settings = self.settings
        moved = self._motion(image)
        settled = bool(self.tracks) and all(
            t.hits >= settings.min_hits and (t.decided or not settings.detect_every_frame_until_decided)
            for t in self.tracks
        )
        self._frames_since_detect += 1
        # Nobody tracked and the idle detection not yet due: the detector waits for motion, and then its turn.
        searching = not self.tracks and pts_s - self._last_detect_pts < settings.idle_detect_interval_s
        if searching and (not moved or self._frames_since_detect < settings.search_detect_interval):
            self.stats.motion_skips += 1
            return self._expire(pts_s)
        if settled and self._frames_since_detect < settings.track_detect_interval:
            # Every face is known: follow them by prediction and let the detector rest this frame.
            self.stats.predicted_frames += 1
            for track in self.tracks:
                track.previous_box, track.box = track.box, predict_box(track.previous_box, track.box, 1.0)
            self.stats.face_frames += len(self.tracks)
            return self._expire(pts_s)
        detections = self.engine.detector.detect(image)
        self.stats.detector_runs += 1
        self._last_detect_pts = pts_s
        self._frames_since_detect = 0
        events = self._update(image, detections, at, pts_s)
        events.extend(self._expire(pts_s))
        return events

    def finish(self) -> list[FaceEvent]:
        """End of stream: every open track leaves."""
        events = [e for track in list(self.tracks) for e in self._settle_before_end(track)]
        ended = self._ended + self.tracks
        self._ended, self.tracks = [], []
        return events + [event for track in ended if (event := self._left(track)) is not None]

    def _settle_before_end(self, track: Track) -> list[FaceEvent]:
        """A face that was tried but never named or called unknown before it went: report it as unknown."""
        if track.decided or track.strong_attempts < self.settings.min_attempts_to_report:
            return []
        return self._call_unknown(track, track.last_at, track.last_pts)

    def _update(self, image: Image, detections: list[Detection], at: datetime, pts_s: float) -> list[FaceEvent]:
        settings = self.settings
        # Associate against where each face should be now (constant velocity), not where it was: a face walking up
        # to the camera grows fast, and the old box alone would overlap too little.
        expected = [predict_box(t.previous_box, t.box, 1.0) for t in self.tracks]
        pairs, lost, new_detections = associate(expected, [d.box for d in detections], settings.min_iou)
        if lost and new_detections:
            extra = associate_by_centre(
                [expected[i] for i in lost], [detections[j].box for j in new_detections], settings.max_centre_shift
            )
            pairs += [(lost[t], new_detections[d]) for t, d in extra]
            taken = {new_detections[d] for _, d in extra}
            new_detections = [j for j in new_detections if j not in taken]
        matched: list[tuple[Track, Detection]] = []
        for track_index, detection_index in pairs:
            track = self.tracks[track_index]
            detection = detections[detection_index]
            track.previous_box, track.box = track.box, detection.box
            track.hits += 1
            track.last_pts, track.last_at = pts_s, at
            matched.append((track, detection))
        for detection_index in new_detections:
            detection = detections[detection_index]
            track = Track(next(self._ids), detection.box, detection.box, pts_s, pts_s, at)
            self.stats.tracks += 1
            self.tracks.append(track)
            matched.append((track, detection))
        self.stats.face_frames += len(matched)

        to_recognise: list[tuple[Track, FaceObservation]] = []
        for track, detection in matched:
            track.frames_since_attempt += 1
            if track.hits < settings.min_hits:
                continue
            wants = (not track.decided and track.frames_since_attempt >= settings.attempt_every_frames) or (
                track.decided and pts_s - track.last_check_pts >= settings.recheck_interval_s
            )
            observation: FaceObservation | None = None
            if wants or track.best_crop is None:
                observation = self.engine.observe(image, [detection])[0]
                self._keep_best_crop(track, image, observation)
            if (
                wants
                and observation is not None
                and not observation.quality.problems(self.engine.limits)
                and self._worth_trying(track, observation, pts_s)
            ):
                to_recognise.append((track, observation))
        events: list[FaceEvent] = []
        if to_recognise:
            embeddings = self.engine.embed([o for _, o in to_recognise])
            self.stats.recognitions += len(to_recognise)
            matches = self.gallery.match_many(embeddings, self.policy)
            for (track, observation), embedding, match in zip(to_recognise, embeddings, matches, strict=True):
                track.embedding_sum = (
                    embedding.copy() if track.embedding_sum is None else track.embedding_sum + embedding
                )
                track.frames_since_attempt = 0
                track.last_check_pts = pts_s
                track.best_attempt_px = max(track.best_attempt_px, observation.quality.face_px)
                track.strong_attempts += observation.quality.face_px >= self.settings.unknown_min_px
                events.extend(self._vote(track, match.person_id, match.score, match.margin, at, pts_s))
        for track, _ in matched:
            if self._ready_to_call_unknown(track, pts_s):
                events.extend(self._call_unknown(track, at, pts_s))
        return events

    def _worth_trying(self, track: Track, observation: FaceObservation, pts_s: float) -> bool:
        """Undecided tracks past max_attempts are tried again when the face got clearly bigger, or now and then."""
        settings = self.settings
        if track.decided or len(track.votes) < settings.max_attempts:
            return True
        return (
            observation.quality.face_px >= settings.better_face_ratio * track.best_attempt_px
            or pts_s - track.last_check_pts >= settings.retry_undecided_s
        )

    def _ready_to_call_unknown(self, track: Track, pts_s: float) -> bool:
        return (
            not track.decided
            and track.strong_attempts >= self.settings.unknown_votes
            and pts_s - track.first_pts >= self.settings.unknown_after_s
        )

    def _keep_best_crop(self, track: Track, image: Image, observation: FaceObservation) -> None:
        if observation.quality.score <= track.best_quality:
            return
        track.best_quality = observation.quality.score
        x1, y1, x2, y2 = observation.detection.box
        pad_w, pad_h = (x2 - x1) * 0.25, (y2 - y1) * 0.25
        height, width = image.shape[:2]
        left, top = max(0, int(x1 - pad_w)), max(0, int(y1 - pad_h))
        right, bottom = min(width, int(x2 + pad_w)), min(height, int(y2 + pad_h))
        if right > left and bottom > top:
            track.best_crop = image[top:bottom, left:right].copy()

    def _vote(
        self, track: Track, person_id: str | None, score: float, margin: float, at: datetime, pts_s: float
    ) -> list[FaceEvent]:
        settings = self.settings
        if track.decided:
            # Sparse re-check: two confident disagreements in a row mean the track now follows someone else.
            if person_id == track.person_id or person_id is None:
                track.recheck_disagreements = 0
                return []
            track.recheck_disagreements += 1
            if track.recheck_disagreements < 2:
                return []
            events = [e for e in [self._left(track)] if e is not None]
            track.decided, track.announced = False, False
            track.votes, track.scores = [], []
            track.recheck_disagreements = 0
            events.extend(self._vote(track, person_id, score, margin, at, pts_s))
            return events
        track.votes.append(person_id)
        track.scores.append((person_id, score, margin))
        counts = Counter(v for v in track.votes if v is not None)
        leader, leader_votes = counts.most_common(1)[0] if counts else (None, 0)
        if leader is not None and leader_votes >= settings.votes_needed:
            agreeing = [(s, m) for p, s, m in track.scores if p == leader]
            return self._decide(track, leader, agreeing, at, pts_s)
        if self._ready_to_call_unknown(track, pts_s):
            return self._call_unknown(track, at, pts_s)
        return []

    def _call_unknown(self, track: Track, at: datetime, pts_s: float) -> list[FaceEvent]:
        """Decide the track as an unknown face, on the evidence of every recognition it had."""
        return self._decide(track, None, [(s, m) for _, s, m in track.scores], at, pts_s)

    def _decide(
        self, track: Track, person_id: str | None, evidence: list[tuple[float, float]], at: datetime, pts_s: float
    ) -> list[FaceEvent]:
        track.decided = True
        track.person_id = person_id
        track.score = float(np.mean([s for s, _ in evidence])) if evidence else 0.0
        track.margin = float(np.mean([m for _, m in evidence])) if evidence else 0.0
        track.announced = True
        # The same person named on another track (still open, or ended less than rejoin_s ago) is one visit whose
        # face was lost or re-detected as a new box: keep the first track's id, and no second `seen` or early `left`.
        # Unknown faces have no name to compare, so their mean embeddings must be close instead.
        earlier = next((t for t in [*self._ended, *self.tracks] if t is not track and self._same_visit(t, track)), None)
        if earlier is not None:
            if earlier in self._ended:
                self._ended.remove(earlier)
            else:
                self.tracks.remove(earlier)
            track.id = earlier.id
            if earlier.best_quality > track.best_quality:
                track.best_quality, track.best_crop = earlier.best_quality, earlier.best_crop
            return []
        return [self._event("seen", track, at, pts_s)]

    def _same_visit(self, earlier: Track, later: Track) -> bool:
        if not earlier.announced or earlier.person_id != later.person_id:
            return False
        if later.person_id is not None:
            return True
        first, second = earlier.mean_embedding(), later.mean_embedding()
        return first is not None and second is not None and float(first @ second) >= self.settings.same_face_similarity

    def _left(self, track: Track) -> FaceEvent | None:
        if not track.announced:
            return None
        track.announced = False
        return self._event("left", track, track.last_at, track.last_pts)

    def _expire(self, pts_s: float) -> list[FaceEvent]:
        settings = self.settings
        keep = []
        events = []
        for track in list(self.tracks):  # settling may merge a track into another: iterate over a copy
            if pts_s - track.last_pts <= settings.lost_after_s:
                keep.append(track)
                continue
            events.extend(self._settle_before_end(track))
            if track.announced:
                self._ended.append(track)
            elif (event := self._left(track)) is not None:
                events.append(event)
        self.tracks = [t for t in keep if t in self.tracks]
        waiting = []
        for track in self._ended:
            if pts_s - track.last_pts > settings.lost_after_s + settings.rejoin_s:
                if (event := self._left(track)) is not None:
                    events.append(event)
            else:
                waiting.append(track)
        self._ended = waiting
        return events

    def _event(self, kind: Literal["seen", "left"], track: Track, at: datetime, pts_s: float) -> FaceEvent:
        return FaceEvent(
            type=kind,
            at=at,
            pts_s=pts_s,
            track=track.id,
            person_id=track.person_id,
            name=self.gallery.names.get(track.person_id, track.person_id) if track.person_id else None,
            score=track.score,
            margin=track.margin,
            quality=max(0.0, track.best_quality),
            snapshot_jpeg=self._jpeg(track.best_crop) if kind == "seen" else None,
        )

    def _jpeg(self, crop: Image | None) -> bytes | None:
        if crop is None or crop.size == 0:
            return None
        limit = self.settings.snapshot_max_px
        scale = min(1.0, limit / max(crop.shape[:2]))
        if scale < 1.0:
            size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
            crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return encoded.tobytes() if ok else None
