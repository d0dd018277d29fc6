"""Identification quality on folders of photos: leave-one-out rank-1, TAR at fixed FAR, open-set stranger rejection."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.recognition.faces import PhotoResult
from edge.recognition.gallery import Gallery, MatchPolicy


@dataclass(frozen=True, slots=True)
class EvalReport:
    """The figures ``rollcall edge eval`` prints."""

    identities: int
    photos: int
    usable_photos: int
    rank1: float
    rank1_probes: int
    tar_at_far: dict[str, float]
    genuine_pairs: int
    impostor_pairs: int
    stranger_reject_rate: float
    stranger_probes: int
    known_accept_rate: float
    known_probes: int
    threshold: float
    min_margin: float

    def as_json(self) -> dict[str, float | int]:
        """The machine-readable summary (keys documented in docs/recognition.md)."""
        out: dict[str, float | int] = {
            "rank1": round(self.rank1, 4),
            "tar_at_far_1e-3": round(self.tar_at_far["1e-3"], 4),
            "tar_at_far_1e-2": round(self.tar_at_far["1e-2"], 4),
            "stranger_reject_rate": round(self.stranger_reject_rate, 4),
            "known_accept_rate": round(self.known_accept_rate, 4),
            "identities": self.identities,
            "photos": self.photos,
            "usable_photos": self.usable_photos,
            "threshold": self.threshold,
            "min_margin": self.min_margin,
        }
        return out


def _rank1(labels: list[str], embeddings: npt.NDArray[np.float32]) -> tuple[float, int]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    correct = probes = 0
    for i, label in enumerate(labels):
        if counts[label] < 2:
            continue  # nobody to find: the only photo of this person is the probe
        rest = [j for j in range(len(labels)) if j != i]
        gallery = Gallery([labels[j] for j in rest], embeddings[rest])
        scores = gallery.person_scores(embeddings[i : i + 1])[0]
        probes += 1
        correct += gallery.people[int(np.argmax(scores))] == label
    return (correct / probes if probes else 0.0), probes


def tar_at_far(genuine: npt.NDArray[np.float32], impostor: npt.NDArray[np.float32], far: float) -> float:
    """Share of genuine pairs above the threshold that lets through at most ``far`` of impostor pairs."""
    if genuine.size == 0 or impostor.size == 0:
        return 0.0
    ordered = np.sort(impostor)[::-1]
    allowed = int(np.floor(far * ordered.size))
    threshold = float(ordered[min(allowed, ordered.size - 1)])
    return float(np.mean(genuine > threshold))


def _pairs(
    labels: list[str], embeddings: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    similarity = embeddings @ embeddings.T
    upper = np.triu_indices(len(labels), k=1)
    label_array = np.array(labels)
    same = label_array[upper[0]] == label_array[upper[1]]
    scores = similarity[upper]
    return scores[same].astype(np.float32), scores[~same].astype(np.float32)


def _open_set(
    labels: list[str], embeddings: npt.NDArray[np.float32], policy: MatchPolicy, stranger_share: float, splits: int
) -> tuple[float, int, float, int]:
    people = sorted(set(labels))
    rejected = strangers = accepted = known = 0
    for seed in range(splits):
        shuffled = people[:]
        random.Random(seed).shuffle(shuffled)
        held_out = set(shuffled[: max(1, round(len(people) * stranger_share))])
        known_idx = [i for i, label in enumerate(labels) if label not in held_out]
        stranger_idx = [i for i, label in enumerate(labels) if label in held_out]
        gallery = Gallery([labels[i] for i in known_idx], embeddings[known_idx])
        for match in gallery.match_many(embeddings[stranger_idx], policy):
            strangers += 1
            rejected += match.person_id is None
        for i in known_idx:
            rest = [j for j in known_idx if j != i]
            if labels[i] not in {labels[j] for j in rest}:
                continue
            probe_gallery = Gallery([labels[j] for j in rest], embeddings[rest])
            match = probe_gallery.match(embeddings[i], policy)
            known += 1
            accepted += match.person_id == labels[i]
    return (rejected / strangers if strangers else 0.0), strangers, (accepted / known if known else 0.0), known


def evaluate(
    results: list[PhotoResult], policy: MatchPolicy, *, stranger_share: float = 0.3, splits: int = 10
) -> EvalReport:
    """All figures from enrolled photos (one embedding per usable photo)."""
    usable = [r for r in results if r.embedding is not None]
    labels = [r.person_id for r in usable]
    embeddings = (
        np.stack([r.embedding for r in usable if r.embedding is not None]).astype(np.float32)
        if usable
        else np.zeros((0, 1), dtype=np.float32)
    )
    rank1, rank1_probes = _rank1(labels, embeddings)
    genuine, impostor = _pairs(labels, embeddings)
    reject, strangers, accept, known = _open_set(labels, embeddings, policy, stranger_share, splits)
    return EvalReport(
        identities=len({r.person_id for r in results}),
        photos=len(results),
        usable_photos=len(usable),
        rank1=rank1,
        rank1_probes=rank1_probes,
        tar_at_far={"1e-2": tar_at_far(genuine, impostor, 1e-2), "1e-3": tar_at_far(genuine, impostor, 1e-3)},
        genuine_pairs=int(genuine.size),
        impostor_pairs=int(impostor.size),
        stranger_reject_rate=reject,
        stranger_probes=strangers,
        known_accept_rate=accept,
        known_probes=known,
        threshold=policy.threshold,
        min_margin=policy.min_margin,
    )
