"""Synthetic door clips from photo folders: people walk up one or two at a time, with a ground truth of each visit."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.recognition.photos import people_folders

log = logging.getLogger("rollcall.doorclip")

Image = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]
FrameProgress = Callable[[int, int], None]
"""``progress(frames_done, frames_total)``, called after each rendered frame."""

TRUTH_VERSION = 1

NOISE_SIGMA = 4.0
"""Standard deviation, in grey levels, of the per-pixel, per-channel sensor noise added to every frame."""
FLICKER = 0.006
"""Standard deviation of the per-frame brightness gain around 1.0 (clipped to ±2.5 sigma, about ±2 grey levels)."""
FACE_BOX_EXPAND = 1.8
"""A face box from ``face_boxes`` is cropped as a square this many times its longer side, around its centre."""
FALLBACK_FACE_SHARE = 0.5
"""Without a face box, the face is assumed to fill about this share of the centred square of the photo's upper 80%."""
FAR_FACE_PX = (56.0, 66.0)
"""Face height range, in pixels of a 720-line frame, of a visitor first seen far away in the doorway."""
NEAR_FACE_PX = (220.0, 260.0)
"""Face height range, in pixels of a 720-line frame, of a visitor closest to the camera."""


@dataclass(frozen=True)
class Visit:
    """One person in view from ``enter_s`` to ``leave_s`` (``person_id`` None: a stranger), in lane 0 (left) or 1."""

    person_id: str | None
    photo: Path
    enter_s: float
    leave_s: float
    lane: int

    def in_view(self, t: float) -> bool:
        """Whether the visitor is drawn at media time ``t`` (``enter_s <= t < leave_s``)."""
        return self.enter_s <= t < self.leave_s


def _photo_key(photo: Path, people_dir: Path | None) -> str:
    """``<folder>/<file>`` relative to the people folder (or the photo's last two path parts)."""
    if people_dir is not None:
        try:
            return photo.relative_to(people_dir).as_posix()
        except ValueError:
            pass
    return f"{photo.parent.name}/{photo.name}" if photo.parent.name else photo.name


@dataclass
class GroundTruth:
    """Who is in view when in a rendered clip; ``people_dir`` only resolves photo paths and is not written out."""

    fps: int
    width: int
    height: int
    frames: int
    duration_s: float
    visits: list[Visit]
    video: str = ""
    seed: int = 0
    people_dir: Path | None = field(default=None, compare=False, repr=False)

    def in_view(self, t: float) -> list[str | None]:
        """Identities in view at media time ``t`` (None for a stranger), left lane first."""
        return [v.person_id for v in sorted(self.visits, key=lambda v: (v.lane, v.enter_s)) if v.in_view(t)]

    def frame_time(self, index: int) -> float:
        """Media time of frame ``index``."""
        return index / self.fps

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (photos as ``<folder>/<file>`` relative to the people folder)."""
        return {
            "version": TRUTH_VERSION,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
            "duration_s": self.duration_s,
            "video": self.video,
            "seed": self.seed,
            "noise_sigma": NOISE_SIGMA,
            "visits": [
                {
                    "person_id": v.person_id,
                    "photo": _photo_key(v.photo, self.people_dir),
                    "enter_s": v.enter_s,
                    "leave_s": v.leave_s,
                    "lane": v.lane,
                }
                for v in self.visits
            ],
        }

    def to_json(self, path: Path | None = None) -> str:
        """The JSON text; also written to ``path`` when given."""
        text = json.dumps(self.as_dict(), indent=2) + "\n"
        if path is not None:
            path.write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, path: Path, people_dir: Path | None = None) -> GroundTruth:
        """Read a truth file; photo paths are resolved against ``people_dir`` when given, else kept relative."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("visits"), list):
            raise ValueError(f"{path}: not a door-clip ground truth (no 'visits' list)")
        visits = []
        for item in data["visits"]:
            photo = Path(item["photo"])
            visits.append(
                Visit(
                    person_id=item["person_id"],
                    photo=people_dir / photo if people_dir is not None else photo,
                    enter_s=float(item["enter_s"]),
                    leave_s=float(item["leave_s"]),
                    lane=int(item.get("lane", 0)),
                )
            )
        fps = int(data["fps"])
        frames = int(data["frames"])
        return cls(
            fps=fps,
            width=int(data["width"]),
            height=int(data["height"]),
            frames=frames,
            duration_s=float(data.get("duration_s", frames / fps)),
            visits=visits,
            video=str(data.get("video", "")),
            seed=int(data.get("seed", 0)),
            people_dir=people_dir,
        )


# --- planning ----------------------------------------------------------------------------------------------------


class _Deck:
    """Draws items in shuffled rounds: every item once before any repeats."""

    def __init__(self, items: Sequence[str], rng: random.Random) -> None:
        self.items = list(items)
        self.rng = rng
        self.pile: list[str] = []

    def draw(self, avoid: str | None = None) -> str:
        if not self.pile:
            self.pile = self.items[:]
            self.rng.shuffle(self.pile)
        for i in range(len(self.pile) - 1, -1, -1):
            if self.pile[i] != avoid:
                return self.pile.pop(i)
        # Only ``avoid`` is left in this round: start the next round early.
        extra = [item for item in self.items if item != avoid]
        return self.rng.choice(extra)


def plan_visits(
    people: Mapping[str, Sequence[Path]],
    *,
    seed: int = 7,
    duration_s: float = 90.0,
    strangers: Mapping[str, Sequence[Path]] | None = None,
    exclude: set[Path] | None = None,
    visit_s: tuple[float, float] = (4.0, 9.0),
    gap_s: tuple[float, float] = (3.0, 12.0),
    pair_share: float = 0.35,
) -> list[Visit]:
    """Who walks up when: visits of ``visit_s`` seconds, alone or two at a time, with empty-door gaps between.

    Deterministic for a seed (``random.Random(seed)``). The clip starts and ends with an empty door of at least
    ``gap_s[0]`` seconds, and groups (one visitor, or two whose visits overlap in different lanes) are separated by
    ``gap_s`` seconds of empty door, so never more than two people are in view and a lane holds one at a time.
    Every identity (known and stranger) appears once before anyone appears again. A visit uses a photo of that
    person that is not in ``exclude`` (the enrolment photos): a person with no other photo (typically one with a
    single photo, used for enrolment) is left out of the visits. Strangers' visits have ``person_id`` None.
    """
    lo_visit, hi_visit = visit_s
    lo_gap, hi_gap = gap_s
    if not 0 < lo_visit <= hi_visit or not 0 < lo_gap <= hi_gap:
        raise ValueError("visit_s and gap_s must be (low, high) with 0 < low <= high")
    if duration_s < 2 * lo_gap + lo_visit:
        raise ValueError(f"duration_s={duration_s} is too short: needs at least {2 * lo_gap + lo_visit:g} s")
    excluded = exclude or set()
    rng = random.Random(seed)
    usable: dict[str, tuple[str | None, list[Path]]] = {}
    for name, photos in sorted(people.items()):
        left = sorted(p for p in photos if p not in excluded)
        if left:
            usable[name] = (name, left)
    for name, photos in sorted((strangers or {}).items()):
        if name in usable:
            raise ValueError(f"{name!r} is both a known person and a stranger")
        left = sorted(p for p in photos if p not in excluded)
        if left:
            usable[name] = (None, left)
    if not usable:
        raise ValueError("nobody can visit: every person's photos are excluded (enrolment) or there are none")
    deck = _Deck(sorted(usable), rng)
    photo_decks = {name: _Deck([str(p) for p in photos], rng) for name, (_, photos) in usable.items()}

    def visit(name: str, enter: float, leave: float, lane: int) -> Visit:
        person_id, _ = usable[name]
        return Visit(person_id, Path(photo_decks[name].draw()), round(enter, 3), round(leave, 3), lane)

    visits: list[Visit] = []
    end_limit = duration_s - lo_gap  # the last group must be gone by then
    t = 0.0
    while True:
        gap_hi = min(hi_gap, end_limit - t - lo_visit)
        if gap_hi < lo_gap:
            break
        enter = t + rng.uniform(lo_gap, gap_hi)
        first_len = rng.uniform(lo_visit, min(hi_visit, end_limit - enter))
        first_name = deck.draw()
        lane = rng.randrange(2)
        group = [visit(first_name, enter, enter + first_len, lane)]
        if len(usable) > 1 and rng.random() < pair_share:
            # The second visitor arrives while the first is still in view (at least 1 s of overlap).
            second_enter = enter + rng.uniform(0.0, max(0.0, first_len - 1.0))
            room = end_limit - second_enter
            if room >= lo_visit:
                second_len = rng.uniform(lo_visit, min(hi_visit, room))
                second_name = deck.draw(avoid=first_name)
                group.append(visit(second_name, second_enter, second_enter + second_len, 1 - lane))
        visits.extend(group)
        t = max(v.leave_s for v in group)
    return visits


# --- rendering ---------------------------------------------------------------------------------------------------


def door_background(width: int, height: int, seed: int) -> Image:
    """A static, deterministic door scene: wall gradient, a door frame and dim corridor, floor, a little texture."""
    rng = np.random.default_rng([seed, 0xD00])
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    wall = 172.0 - 38.0 * ys - 14.0 * xs * xs  # light from above, darker corners
    tint = np.array([0.93, 1.0, 1.06], dtype=np.float32)  # warm wall (BGR)
    image = wall[:, :, None] * tint[None, None, :]
    floor_y = round(height * 0.86)
    image[floor_y:] = np.array([70.0, 84.0, 98.0], dtype=np.float32) + 18.0 * ys[floor_y:, :, None]
    door_w, door_top = round(width * 0.24), round(height * 0.1)
    x1 = (width - door_w) // 2
    x2 = x1 + door_w
    frame_t = max(2, round(width * 0.014))
    canvas = np.ascontiguousarray(image, dtype=np.float32)
    cv2.rectangle(canvas, (x1 - frame_t, door_top - frame_t), (x2 + frame_t, floor_y), (52, 78, 112), thickness=-1)
    cv2.rectangle(canvas, (x1 - frame_t, door_top - frame_t), (x2 + frame_t, floor_y), (40, 58, 84), 1)
    # Corridor seen through the open door: dim, lit from its far end.
    corridor_ys = np.linspace(0.0, 1.0, floor_y - door_top, dtype=np.float32)[:, None, None]
    canvas[door_top:floor_y, x1:x2] = np.array([58.0, 62.0, 66.0], dtype=np.float32) + 26.0 * (1 - corridor_ys)
    # A light switch and a notice board give the wall some structure.
    sw = max(3, round(width * 0.012))
    cv2.rectangle(
        canvas,
        (x2 + 3 * frame_t, round(height * 0.48)),
        (x2 + 3 * frame_t + sw, round(height * 0.48) + 2 * sw),
        (205, 210, 212),
        -1,
    )
    bx1, by1 = round(width * 0.07), round(height * 0.2)
    cv2.rectangle(canvas, (bx1, by1), (bx1 + round(width * 0.13), by1 + round(height * 0.2)), (92, 120, 150), -1)
    for k in range(3):
        px = bx1 + round(width * (0.012 + 0.04 * k))
        cv2.rectangle(
            canvas,
            (px, by1 + round(height * 0.03)),
            (px + round(width * 0.03), by1 + round(height * 0.12)),
            (225, 228, 232),
            -1,
        )
    cv2.line(canvas, (0, floor_y), (width, floor_y), (60, 70, 80), max(1, height // 240))
    # Low-frequency plaster texture and a little fine grain, fixed for the clip.
    coarse = rng.normal(0.0, 3.5, (max(2, height // 24), max(2, width // 24), 1)).astype(np.float32)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, 1.5, (height, width)).astype(np.float32)
    canvas += (texture.reshape(height, width) + grain)[:, :, None]
    blurred = cv2.GaussianBlur(canvas, (0, 0), max(0.6, height / 720.0))
    return np.asarray(np.clip(blurred, 0, 255), dtype=np.uint8)


def _feathered_mask(side: int) -> npt.NDArray[np.float32]:
    """An elliptical alpha mask (head and hair) with soft edges, ``side`` x ``side``."""
    mask = np.zeros((side, side), dtype=np.float32)
    centre = (side // 2, round(side * 0.5))
    axes = (max(1, round(side * 0.36)), max(1, round(side * 0.45)))
    cv2.ellipse(mask, centre, axes, 0.0, 0.0, 360.0, 1.0, thickness=-1)
    return np.asarray(cv2.GaussianBlur(mask, (0, 0), max(1.0, side * 0.05)), dtype=np.float32)


@dataclass(frozen=True)
class _Head:
    """A visitor's square head crop, ready to scale, with the share of its height that is face."""

    crop: Image
    mask: npt.NDArray[np.float32]
    face_share: float


def _head_crop(photo: Path, box: Box | None, side: int) -> _Head:
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read photo {photo}")
    height, width = image.shape[:2]
    if box is not None:
        x1, y1, x2, y2 = box
        size = FACE_BOX_EXPAND * max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        face_share = (y2 - y1) / size
    else:
        size = min(width, 0.8 * height)
        cx, cy = width / 2, 0.4 * height
        face_share = FALLBACK_FACE_SHARE
    left, top = round(cx - size / 2), round(cy - size / 2)
    n = max(2, round(size))
    pad = max(0, -left, -top, left + n - width, top + n - height)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top = left + pad, top + pad
    square = image[top : top + n, left : left + n]
    interpolation = cv2.INTER_AREA if n > side else cv2.INTER_LINEAR
    crop = np.asarray(cv2.resize(square, (side, side), interpolation=interpolation), dtype=np.uint8)
    return _Head(crop, _feathered_mask(side), face_share)


def _perspective(far: float, near: float, u: float) -> float:
    """Apparent size at fraction ``u`` of a walk at constant speed from ``far`` size to ``near`` size (1/distance)."""
    u = min(1.0, max(0.0, u))
    return 1.0 / (1.0 / far + (1.0 / near - 1.0 / far) * u)


def _smooth(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


@dataclass(frozen=True)
class _Motion:
    """How one visit moves; ``at(t)`` gives the face centre and face height in pixels."""

    visit: Visit
    far_face: float
    near_face: float
    door_x: float
    door_y: float
    near_x: float
    near_y: float
    approach: float
    exit_share: float
    exit_side: bool
    edge_x: float
    drift: float
    phases: tuple[float, float, float]

    def at(self, t: float) -> tuple[float, float, float]:
        v = self.visit
        u = (t - v.enter_s) / max(1e-6, v.leave_s - v.enter_s)
        linger_end = 1.0 - self.exit_share
        p1, p2, p3 = self.phases
        if u < self.approach:
            w = u / self.approach
            face = _perspective(self.far_face, self.near_face, w)
            k = (face - self.far_face) / (self.near_face - self.far_face)
            x = self.door_x + (self.near_x - self.door_x) * k
            y = self.door_y + (self.near_y - self.door_y) * k
            x -= self.drift * 0.5 * math.sin(math.pi * w)  # a little weaving while walking
        elif u < linger_end:
            # Lingering close to the camera: a slow sideways drift and a slight jitter, fading in and out.
            s = t - v.enter_s
            w = (u - self.approach) / max(1e-6, linger_end - self.approach)
            envelope = math.sin(math.pi * w)
            face = self.near_face * (1.0 + 0.02 * envelope * math.sin(2 * math.pi * 0.4 * s + p1))
            x = self.near_x + self.drift * envelope
            x += 0.012 * self.near_face * envelope * math.sin(2 * math.pi * 1.7 * s + p2)
            y = self.near_y + 0.01 * self.near_face * envelope * math.sin(2 * math.pi * 1.3 * s + p3)
        else:
            w = (u - linger_end) / max(1e-6, self.exit_share)
            if self.exit_side:
                # Walking past the camera and out of the picture sideways; half the head is still in at leave_s.
                face = self.near_face * (1.0 - 0.1 * w)
                x = self.near_x + (self.edge_x - self.near_x) * _smooth(w)
                y = self.near_y + 0.05 * self.near_face * w
            else:
                # Turning back through the door: shrinking again as the distance grows.
                face = _perspective(self.near_face, self.far_face, w)
                k = (self.near_face - face) / (self.near_face - self.far_face)
                x = self.near_x + (self.door_x - self.near_x) * k
                y = self.near_y + (self.door_y - self.near_y) * k
        return x, y, face


def _motion_for(visit: Visit, index: int, seed: int, width: int, height: int, face_share: float) -> _Motion:
    rng = random.Random(f"doorclip/{seed}/{index}")
    px = height / 720.0
    near_face = rng.uniform(*NEAR_FACE_PX) * px
    # Keep a close head inside its half of the picture so the two lanes never overlap.
    near_face = min(near_face, 0.4 * width * face_share)
    far_face = min(rng.uniform(*FAR_FACE_PX) * px, near_face * 0.5)
    lane_sign = -1.0 if visit.lane == 0 else 1.0
    door_x = width / 2 + lane_sign * width * 0.06 + rng.uniform(-0.01, 0.01) * width
    near_x = width / 2 + lane_sign * width * 0.22 + rng.uniform(-0.025, 0.025) * width
    return _Motion(
        visit=visit,
        far_face=far_face,
        near_face=near_face,
        door_x=door_x,
        door_y=height * rng.uniform(0.34, 0.38),
        near_x=near_x,
        near_y=height * rng.uniform(0.4, 0.46),
        approach=rng.uniform(0.3, 0.4),
        exit_share=rng.uniform(0.2, 0.3),
        exit_side=rng.random() < 0.5,
        edge_x=0.0 if visit.lane == 0 else float(width),
        drift=rng.choice((-1.0, 1.0)) * rng.uniform(0.008, 0.02) * width,
        phases=(rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)),
    )


def _paste(frame: npt.NDArray[np.float32], head: _Head, cx: float, cy: float, face_px: float, shade: float) -> None:
    side = max(2, round(face_px / head.face_share))
    if side == head.crop.shape[0]:
        crop, mask = head.crop, head.mask
    else:
        interpolation = cv2.INTER_AREA if side < head.crop.shape[0] else cv2.INTER_LINEAR
        crop = np.asarray(cv2.resize(head.crop, (side, side), interpolation=interpolation), dtype=np.uint8)
        mask = np.asarray(cv2.resize(head.mask, (side, side), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    height, width = frame.shape[:2]
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    fx1, fy1, fx2, fy2 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
    if fx1 >= fx2 or fy1 >= fy2:
        return
    c = crop[fy1 - y0 : fy2 - y0, fx1 - x0 : fx2 - x0].astype(np.float32) * shade
    a = mask[fy1 - y0 : fy2 - y0, fx1 - x0 : fx2 - x0, None]
    region = frame[fy1:fy2, fx1:fx2]
    frame[fy1:fy2, fx1:fx2] = region + (c - region) * a


_NOISE_LUT = np.array([round(NOISE_SIGMA * NormalDist().inv_cdf((i + 0.5) / 256)) for i in range(256)], np.int16)


def add_sensor_noise(frame: Image, seed: int, index: int) -> Image:
    """Per-frame brightness flicker and Gaussian sensor noise (sigma ``NOISE_SIGMA``), both seeded by the frame."""
    rng = np.random.default_rng([seed, 0x5E45, index])
    gain = 1.0 + float(np.clip(rng.normal(0.0, FLICKER), -2.5 * FLICKER, 2.5 * FLICKER))
    lit = cv2.convertScaleAbs(frame, alpha=gain)
    # Quantised Gaussian via an inverse-CDF table over uniform bytes: 7x faster than drawing normals.
    noise = cv2.LUT(rng.integers(0, 256, frame.shape, dtype=np.uint8), _NOISE_LUT)
    return np.asarray(cv2.add(lit, noise, dtype=cv2.CV_8U), dtype=np.uint8)


def _open_writer(out_path: Path, fps: int, width: int, height: int) -> tuple[cv2.VideoWriter, Path]:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (width, height))
    if writer.isOpened():
        return writer, out_path
    writer.release()
    fallback = out_path.with_suffix(".avi")
    log.warning("no mp4v encoder for %s: writing Motion-JPEG %s instead", out_path, fallback)
    writer = cv2.VideoWriter(str(fallback), cv2.VideoWriter.fourcc(*"MJPG"), float(fps), (width, height))
    if not writer.isOpened():
        writer.release()
        raise RuntimeError(f"OpenCV can write neither mp4v ({out_path}) nor MJPG ({fallback})")
    return writer, fallback


def render_clip(
    visits: Sequence[Visit],
    out_path: Path,
    *,
    fps: int = 10,
    width: int = 1280,
    height: int = 720,
    seed: int = 7,
    people_dir: Path | None = None,
    duration_s: float | None = None,
    face_boxes: Mapping[Path, Box] | None = None,
    progress: FrameProgress | None = None,
) -> GroundTruth:
    """Render the visits over a synthetic door scene into an MP4 (MJPG .avi if mp4v is missing; logged).

    Each visitor is the head region of their photo (``face_boxes[photo]`` expanded 1.8x when given, else the centred
    square of the photo's upper 80%), blended through a feathered ellipse. They appear in the doorway with a face
    about 60 px high (at 720 lines), grow with perspective to 220-260 px as they walk up, linger with a slight drift
    and jitter, then walk back through the door or out of the picture sideways. Every frame gets a brightness gain
    around 1 (sigma ``FLICKER``) and independent Gaussian noise (sigma ``NOISE_SIGMA`` = 4 grey levels), seeded by
    (seed, frame): frames of an empty door differ only by that noise, which a motion gate on a blurred thumbnail
    does not see (the encoder softens it further). ``duration_s`` defaults to the last visit's end plus 3 s; the
    truth cuts visits at the clip's end and drops those that start after it. Photo paths relative to ``people_dir``
    are resolved against it. ``progress(done, total)`` is called after each frame.
    """
    if fps <= 0 or width < 16 or height < 16:
        raise ValueError("fps must be positive and the frame at least 16x16")
    for v in visits:
        if v.lane not in (0, 1):
            raise ValueError(f"lane must be 0 or 1: {v}")
        if v.leave_s <= v.enter_s:
            raise ValueError(f"visit ends before it starts: {v}")
    resolved = [
        Visit(v.person_id, people_dir / v.photo, v.enter_s, v.leave_s, v.lane)
        if people_dir is not None and not v.photo.is_absolute()
        else v
        for v in visits
    ]
    if duration_s is None:
        duration_s = max((v.leave_s for v in resolved), default=0.0) + 3.0
    frames = max(1, round(duration_s * fps))
    boxes = face_boxes or {}
    head_side = max(8, round(max(NEAR_FACE_PX) * height / 720.0 / FALLBACK_FACE_SHARE * 1.1))
    heads: dict[Path, _Head] = {}
    for v in resolved:
        if v.photo not in heads:
            heads[v.photo] = _head_crop(v.photo, boxes.get(v.photo), head_side)
    motions = [_motion_for(v, i, seed, width, height, heads[v.photo].face_share) for i, v in enumerate(resolved)]
    background = door_background(width, height, seed)
    background_f = background.astype(np.float32)
    writer, written = _open_writer(out_path, fps, width, height)
    try:
        for index in range(frames):
            t = index / fps
            active = [m for m in motions if m.visit.in_view(t)]
            if active:
                canvas = background_f.copy()
                placed = [(m, *m.at(t)) for m in active]
                for m, x, y, face in sorted(placed, key=lambda p: p[3]):  # nearer (bigger) heads cover farther ones
                    shade = 0.8 + 0.2 * min(1.0, face / m.near_face)  # dimmer in the corridor
                    _paste(canvas, heads[m.visit.photo], x, y, face, shade)
                composed = np.asarray(np.clip(canvas, 0, 255), dtype=np.uint8)
            else:
                composed = background
            writer.write(add_sensor_noise(composed, seed, index))
            if progress is not None:
                progress(index + 1, frames)
    finally:
        writer.release()
    end = frames / fps
    shown = [replace(v, leave_s=min(v.leave_s, end)) for v in resolved if v.enter_s < end]
    return GroundTruth(
        fps=fps,
        width=width,
        height=height,
        frames=frames,
        duration_s=round(frames / fps, 6),
        visits=sorted(shown, key=lambda v: (v.enter_s, v.lane)),
        video=written.name,
        seed=seed,
        people_dir=people_dir,
    )


def generate_door_clip(
    people_dir: Path,
    out_dir: Path,
    *,
    seed: int = 7,
    duration_s: float = 90.0,
    fps: int = 10,
    width: int = 1280,
    height: int = 720,
    enrol_photos_per_person: int = 1,
    stranger_share: float = 0.2,
    face_boxes: Mapping[Path, Box] | None = None,
    progress: FrameProgress | None = None,
) -> tuple[Path, Path, dict[str, list[Path]]]:
    """Plan and render ``door.mp4`` and ``door.truth.json`` in ``out_dir`` from one sub-folder of photos per person.

    Identities are split deterministically (by ``seed``) into known people and strangers (``stranger_share`` of
    them, at least one when the share is positive and there are two or more identities, never all). Each known
    person's first ``enrol_photos_per_person`` photos (sorted) are returned for the caller's gallery and are never
    shown in the clip; a known person with no other photo does not visit. Returns (video, truth, enrolment).
    """
    if enrol_photos_per_person < 1:
        raise ValueError("enrol_photos_per_person must be at least 1")
    if not 0.0 <= stranger_share < 1.0:
        raise ValueError("stranger_share must be in [0, 1)")
    people = people_folders(people_dir)
    names = sorted(people)
    random.Random(f"doorclip-split/{seed}").shuffle(names)
    n_strangers = round(stranger_share * len(names))
    if stranger_share > 0 and len(names) >= 2:
        n_strangers = max(1, n_strangers)
    n_strangers = min(n_strangers, len(names) - 1)
    stranger_names = set(names[:n_strangers])
    known = {name: photos for name, photos in people.items() if name not in stranger_names}
    strangers = {name: photos for name, photos in people.items() if name in stranger_names}
    enrolment = {name: photos[:enrol_photos_per_person] for name, photos in known.items()}
    visits = plan_visits(
        known,
        seed=seed,
        duration_s=duration_s,
        strangers=strangers,
        exclude={p for photos in enrolment.values() for p in photos},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = render_clip(
        visits,
        out_dir / "door.mp4",
        fps=fps,
        width=width,
        height=height,
        seed=seed,
        people_dir=people_dir,
        duration_s=duration_s,
        face_boxes=face_boxes,
        progress=progress,
    )
    truth_path = out_dir / "door.truth.json"
    truth.to_json(truth_path)
    return out_dir / truth.video, truth_path, enrolment
