"""IoU tracking primitives: overlap matrices and greedy association of detections to tracks (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]


def iou_matrix(boxes_a: Sequence[Box], boxes_b: Sequence[Box]) -> npt.NDArray[np.float64]:
    """Intersection over union of every box in ``boxes_a`` with every box in ``boxes_b``."""
    if not boxes_a or not boxes_b:
        return np.zeros((len(boxes_a), len(boxes_b)), dtype=np.float64)
    a = np.asarray(boxes_a, dtype=np.float64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64)[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def associate(
    track_boxes: Sequence[Box], detection_boxes: Sequence[Box], min_iou: float
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Greedy highest-IoU-first matching: (track, detection) pairs, unmatched tracks, unmatched detections."""
    overlaps = iou_matrix(track_boxes, detection_boxes)
    pairs: list[tuple[int, int]] = []
    used_tracks: set[int] = set()
    used_detections: set[int] = set()
    if overlaps.size:
        order = np.dstack(np.unravel_index(np.argsort(-overlaps, axis=None), overlaps.shape))[0]
        for track, detection in order:
            if overlaps[track, detection] < min_iou:
                break
            if track in used_tracks or detection in used_detections:
                continue
            pairs.append((int(track), int(detection)))
            used_tracks.add(int(track))
            used_detections.add(int(detection))
    unmatched_tracks = [i for i in range(len(track_boxes)) if i not in used_tracks]
    unmatched_detections = [j for j in range(len(detection_boxes)) if j not in used_detections]
    return pairs, unmatched_tracks, unmatched_detections


def predict_box(previous: Box, current: Box, steps: float) -> Box:
    """Constant-velocity guess of where a box will be ``steps`` frames after ``current``."""
    return (
        current[0] + (current[0] - previous[0]) * steps,
        current[1] + (current[1] - previous[1]) * steps,
        current[2] + (current[2] - previous[2]) * steps,
        current[3] + (current[3] - previous[3]) * steps,
    )


def associate_by_centre(
    track_boxes: Sequence[Box], detection_boxes: Sequence[Box], max_distance: float
) -> list[tuple[int, int]]:
    """Greedy nearest-centre matching for what IoU left over.

    Pairs (track, detection) whose centres lie within ``max_distance`` times the larger box width: a face walking
    up to a door grows faster than IoU forgives.
    """
    candidates: list[tuple[float, int, int]] = []
    for t, (tx1, ty1, tx2, ty2) in enumerate(track_boxes):
        for d, (dx1, dy1, dx2, dy2) in enumerate(detection_boxes):
            scale = max(tx2 - tx1, dx2 - dx1, 1.0)
            distance = float(np.hypot((tx1 + tx2 - dx1 - dx2) / 2, (ty1 + ty2 - dy1 - dy2) / 2)) / scale
            if distance <= max_distance:
                candidates.append((distance, t, d))
    pairs: list[tuple[int, int]] = []
    used_t: set[int] = set()
    used_d: set[int] = set()
    for _, t, d in sorted(candidates):
        if t not in used_t and d not in used_d:
            pairs.append((t, d))
            used_t.add(t)
            used_d.add(d)
    return pairs
