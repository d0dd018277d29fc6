"""Gallery matching (one matrix product, per-person best, threshold and margin) and IoU association."""

from __future__ import annotations

import numpy as np
import pytest

from edge.recognition.gallery import Gallery, MatchPolicy
from edge.recognition.tracker import associate, iou_matrix, predict_box


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _gallery() -> Gallery:
    labels = ["bob", "alice", "bob", "carol"]
    embeddings = np.stack([_unit(1, 0, 0), _unit(0, 1, 0), _unit(1, 1, 0), _unit(0, 0, 1)])
    return Gallery(labels, embeddings, names={"alice": "Alice A."})


def test_person_scores_take_each_persons_best_template() -> None:
    gallery = _gallery()
    assert gallery.people == ["alice", "bob", "carol"]
    scores = gallery.person_scores(np.stack([_unit(1, 0.1, 0)]))
    assert scores.shape == (1, 3)
    # bob's best template is (1, 0, 0), not the average of his two
    assert scores[0, 1] == pytest.approx(float(_unit(1, 0.1, 0) @ _unit(1, 0, 0)))


def test_match_needs_threshold_and_margin() -> None:
    gallery = _gallery()
    clear = gallery.match(_unit(0, 0, 1), MatchPolicy(threshold=0.5, min_margin=0.1))
    assert clear.person_id == "carol" and clear.margin == pytest.approx(1.0)
    between = _unit(0.41, 1, 0)  # alice (0, 1, 0) and bob's (1, 1, 0) almost tie
    tie = gallery.match(between, MatchPolicy(threshold=0.5, min_margin=0.1))
    assert tie.person_id is None and tie.best_id == "alice" and tie.score > 0.9 and tie.margin < 0.01
    weak = gallery.match(_unit(1, 1, 2), MatchPolicy(threshold=0.9, min_margin=0.0))
    assert weak.person_id is None and weak.best_id == "carol"


def test_match_many_equals_one_by_one() -> None:
    gallery = _gallery()
    rng = np.random.default_rng(3)
    queries = rng.normal(size=(20, 3)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    policy = MatchPolicy(threshold=0.3, min_margin=0.05)
    together = gallery.match_many(queries, policy)
    alone = [gallery.match(q, policy) for q in queries]
    assert [m.person_id for m in together] == [m.person_id for m in alone]
    assert [m.best_id for m in together] == [m.best_id for m in alone]
    assert np.allclose([m.score for m in together], [m.score for m in alone], atol=1e-6)
    assert any(m.person_id is None for m in together) and any(m.person_id for m in together)


def test_empty_gallery_knows_nobody() -> None:
    gallery = Gallery([], np.zeros((0, 3), dtype=np.float32))
    match = gallery.match(_unit(1, 0, 0), MatchPolicy())
    assert (match.person_id, match.best_id) == (None, None)


def test_gallery_refuses_mismatched_labels() -> None:
    with pytest.raises(ValueError):
        Gallery(["a"], np.zeros((2, 3), dtype=np.float32))


def test_iou_and_greedy_association() -> None:
    tracks = [(0.0, 0.0, 10.0, 10.0), (100.0, 100.0, 120.0, 120.0)]
    detections = [(101.0, 101.0, 121.0, 121.0), (1.0, 0.0, 11.0, 10.0), (300.0, 300.0, 310.0, 310.0)]
    overlaps = iou_matrix(tracks, detections)
    assert overlaps[0, 1] == pytest.approx(90 / 110)
    assert overlaps[0, 2] == 0.0
    pairs, lost, new = associate(tracks, detections, min_iou=0.3)
    assert sorted(pairs) == [(0, 1), (1, 0)]
    assert lost == [] and new == [2]
    pairs, lost, new = associate(tracks, detections, min_iou=0.95)
    assert pairs == [] and lost == [0, 1] and new == [0, 1, 2]


def test_association_prefers_the_best_overlap() -> None:
    tracks = [(0.0, 0.0, 10.0, 10.0), (4.0, 0.0, 14.0, 10.0)]
    detections = [(4.0, 0.0, 14.0, 10.0)]
    pairs, lost, _ = associate(tracks, detections, min_iou=0.1)
    assert pairs == [(1, 0)] and lost == [0]


def test_predict_box_continues_the_motion() -> None:
    assert predict_box((0, 0, 10, 10), (2, 1, 12, 11), 2.0) == (6, 3, 16, 13)


def test_centre_association_catches_a_fast_growing_face() -> None:
    from edge.recognition.tracker import associate_by_centre

    far = (100.0, 100.0, 140.0, 140.0)  # 40 px face
    near = (90.0, 95.0, 170.0, 175.0)  # the same face a moment later, twice the size: IoU only 0.25
    elsewhere = (600.0, 100.0, 640.0, 140.0)
    assert associate([far], [near], min_iou=0.3)[0] == []
    assert associate_by_centre([far], [elsewhere, near], max_distance=1.0) == [(0, 1)]
    assert associate_by_centre([far], [elsewhere], max_distance=1.0) == []
