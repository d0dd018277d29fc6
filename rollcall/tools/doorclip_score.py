"""Scores pipeline events against a door clip's ground truth: one verdict per visit, and identity accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rollcall.tools.doorclip import GroundTruth

SCORE_SLACK_S = 1.5
"""A ``seen`` this long after a visit's end still counts for that visit."""


def score_events(
    truth: GroundTruth, events: Sequence[Mapping[str, Any]], *, slack_s: float = SCORE_SLACK_S
) -> dict[str, Any]:
    """Match pipeline events to visits and count how each visit went.

    Events are ``{"type": "seen"|"left", "pts_s", "track", "person_id"}`` (other types are ignored and counted).
    A ``seen`` at ``t`` may belong to any visit with ``enter_s <= t <= leave_s + slack_s``; it goes to the visit its
    track already belongs to, else (in this order) to a visit of the same identity not yet seen, a visit not yet
    seen, a visit of the same identity, any candidate (earliest entry first within each tier). A ``left`` closes the
    latest ``seen`` of its track. Each visit gets exactly one verdict:

    - ``missed``: no ``seen``;
    - ``wrong_identity``: a ``seen`` names someone else (a stranger given a name also counts in ``strangers_named``);
    - ``duplicate_seen``: more than one ``seen``, all with the right identity;
    - ``missing_left``: one right ``seen`` but no ``left`` for its track;
    - ``correct``: exactly one ``seen`` with the right identity (None for a stranger) and a ``left`` for its track.

    ``unmatched_events`` counts ``seen`` events outside every visit and ``left`` events with no ``seen`` before them
    on their track. ``identity_accuracy`` = ``visits_correct / visits_total`` (0.0 without visits).
    """
    visits = sorted(truth.visits, key=lambda v: (v.enter_s, v.lane))
    seen_by_visit: list[list[dict[str, Any]]] = [[] for _ in visits]
    track_visit: dict[int, int] = {}
    open_seen: dict[int, dict[str, Any]] = {}
    unmatched = ignored = 0
    ordered = sorted(enumerate(events), key=lambda item: (float(item[1].get("pts_s", 0.0)), item[0]))
    for _, event in ordered:
        kind = event.get("type")
        if kind not in ("seen", "left"):
            ignored += 1
            continue
        t = float(event["pts_s"])
        track = int(event["track"])
        person = event.get("person_id")
        if kind == "left":
            record = open_seen.pop(track, None)
            if record is None:
                unmatched += 1
            else:
                record["left_s"] = t
            continue
        candidates = [i for i, v in enumerate(visits) if v.enter_s <= t <= v.leave_s + slack_s]
        if not candidates:
            unmatched += 1
            continue
        bound = track_visit.get(track)
        if bound is not None and bound in candidates:
            chosen = bound
        else:
            tiers = (
                [i for i in candidates if visits[i].person_id == person and not seen_by_visit[i]],
                [i for i in candidates if not seen_by_visit[i]],
                [i for i in candidates if visits[i].person_id == person],
                candidates,
            )
            chosen = next(tier for tier in tiers if tier)[0]
        track_visit[track] = chosen
        record = {"pts_s": t, "track": track, "person_id": person, "left_s": None}
        seen_by_visit[chosen].append(record)
        open_seen[track] = record
    counts = {"correct": 0, "missed": 0, "wrong_identity": 0, "duplicate_seen": 0, "missing_left": 0}
    strangers_named = 0
    per_visit = []
    for visit, seens in zip(visits, seen_by_visit, strict=True):
        if not seens:
            verdict = "missed"
        elif any(s["person_id"] != visit.person_id for s in seens):
            verdict = "wrong_identity"
            if visit.person_id is None:
                strangers_named += 1
        elif len(seens) > 1:
            verdict = "duplicate_seen"
        elif seens[0]["left_s"] is None:
            verdict = "missing_left"
        else:
            verdict = "correct"
        counts[verdict] += 1
        per_visit.append(
            {
                "person_id": visit.person_id,
                "enter_s": visit.enter_s,
                "leave_s": visit.leave_s,
                "verdict": verdict,
                "seen": [{"pts_s": s["pts_s"], "track": s["track"], "person_id": s["person_id"]} for s in seens],
            }
        )
    total = len(visits)
    return {
        "visits_total": total,
        "visits_correct": counts["correct"],
        "wrong_identity": counts["wrong_identity"],
        "strangers_named": strangers_named,
        "missed": counts["missed"],
        "duplicate_seen": counts["duplicate_seen"],
        "missing_left": counts["missing_left"],
        "unmatched_events": unmatched,
        "ignored_events": ignored,
        "stranger_visits": sum(1 for v in visits if v.person_id is None),
        "identity_accuracy": counts["correct"] / total if total else 0.0,
        "per_visit": per_visit,
    }
