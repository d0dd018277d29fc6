"""The gallery of enrolled faces and the match: one matrix product, per-person best score, threshold and margin."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Embeddings = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """When a best match counts as that person.

    Defaults from ``rollcall edge eval`` with det_500m + MobileFaceNet on the 35 identities of the test photos (20
    splits, 30 % of identities held out as strangers): per single photo, 97.4 % of strangers rejected and 90.3 % of
    known people accepted. At the door a track votes over several frames, so a known person is still named while a
    stranger needs several confident wrong matches in a row to be misnamed.
    """

    threshold: float = 0.52
    """Cosine similarity the best person must reach."""
    min_margin: float = 0.03
    """How far the best person must lead the runner-up."""


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome for one face: ``person_id`` None means unknown; ``best_id`` is the nearest person regardless."""

    person_id: str | None
    best_id: str | None
    score: float
    margin: float


@dataclass
class Gallery:
    """Templates (unit vectors) with the person each belongs to; a person may have several templates."""

    labels: list[str]
    embeddings: Embeddings
    names: dict[str, str] = field(default_factory=dict)
    version: int = 0
    model_id: str = ""
    _people: list[str] = field(init=False, repr=False)
    _starts: npt.NDArray[np.intp] = field(init=False, repr=False)
    _sorted: Embeddings = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.embeddings):
            raise ValueError(f"{len(self.labels)} labels for {len(self.embeddings)} embeddings")
        order = sorted(range(len(self.labels)), key=lambda i: self.labels[i])
        sorted_labels = [self.labels[i] for i in order]
        width = self.embeddings.shape[1] if self.embeddings.ndim == 2 else 0
        self._sorted = np.ascontiguousarray(self.embeddings[order], dtype=np.float32).reshape(len(order), width)
        first_index: dict[str, int] = {}
        for index, label in enumerate(sorted_labels):
            first_index.setdefault(label, index)
        self._people = list(first_index)  # already sorted: the labels were
        self._starts = np.array(list(first_index.values()), dtype=np.intp)

    @property
    def people(self) -> list[str]:
        """Person ids in the gallery, sorted."""
        return list(self._people)

    @property
    def dimension(self) -> int:
        """Embedding size."""
        return int(self._sorted.shape[1]) if self._sorted.size else 0

    def __len__(self) -> int:
        return len(self._people)

    def person_scores(self, queries: Embeddings) -> npt.NDArray[np.float32]:
        """(queries x people) best cosine similarity of each query to each person's templates."""
        if not self._people:
            return np.zeros((len(queries), 0), dtype=np.float32)
        similarities = queries @ self._sorted.T
        return np.maximum.reduceat(similarities, self._starts, axis=1)

    def match_many(self, queries: Embeddings, policy: MatchPolicy) -> list[Match]:
        """Match every query embedding (rows) at once."""
        scores = self.person_scores(queries)
        matches = []
        for row in scores:
            if row.size == 0:
                matches.append(Match(None, None, 0.0, 0.0))
                continue
            best = int(np.argmax(row))
            best_score = float(row[best])
            runner_up = float(np.partition(row, -2)[-2]) if row.size > 1 else 0.0
            margin = best_score - max(runner_up, 0.0)
            accepted = best_score >= policy.threshold and margin >= policy.min_margin
            best_id = self._people[best]
            matches.append(Match(best_id if accepted else None, best_id, best_score, max(0.0, margin)))
        return matches

    def match(self, query: Embeddings, policy: MatchPolicy) -> Match:
        """Match one embedding."""
        return self.match_many(query.reshape(1, -1), policy)[0]
