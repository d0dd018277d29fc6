"""``rollcall bench wire``: event payloads per second through the strict wire decoder, against bare ``json.loads``.

Plain ``json.loads`` is the floor any decoder pays; measuring it side by side on the same payloads makes the cost of
strictness a ratio, not a guess.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ulid import ULID

from edge.protocol import wire
from rollcall.bench.runner import Benchmark, Figures


def _best_rate(work: Callable[[], Any], items: int, repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` runs (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return items / best


def bench_wire(count: int, repeats: int) -> dict[str, float]:
    """Decode ``count`` event payloads with the contract and with bare json.loads."""
    topics = wire.Topics("hq")
    start = datetime(2026, 11, 21, 8, tzinfo=UTC)
    topic = topics.device_event("door-1")
    payloads = [
        wire.encode(
            wire.Event(
                event_id=str(ULID()),
                device="door-1",
                seq=i,
                at=start + timedelta(seconds=i),
                type="seen" if i % 2 == 0 else "left",
                person_id=f"p-{i % 500:04d}",
                score=0.62,
                margin=0.21,
                track=i // 2,
                quality=0.8,
                has_snapshot=True,
            )
        )
        for i in range(count)
    ]

    def strict() -> None:
        for raw in payloads:
            wire.decode(topic, raw)

    def baseline() -> None:
        for raw in payloads:
            json.loads(raw)

    ours = _best_rate(strict, count, repeats)
    base = _best_rate(baseline, count, repeats)
    return {
        "wire_decode_per_s": round(ours),
        "json_loads_per_s": round(base),
        "strict_cost_ratio": round(base / ours, 2),
        "payload_bytes": len(payloads[0]),
    }


def _check(args: argparse.Namespace) -> str | None:
    if args.count < 1 or args.repeats < 1:
        return "rollcall bench: --count and --repeats must be at least 1"
    return None


def _report(figures: Figures, args: argparse.Namespace) -> list[str]:
    return [
        f"  strict wire.decode : {figures['wire_decode_per_s']:>10,.0f} events/s",
        f"  baseline json.loads: {figures['json_loads_per_s']:>10,.0f} events/s",
        f"  strictness costs   : {figures['strict_cost_ratio']:>10.2f}x the bare parse",
    ]


BENCHMARK = Benchmark(
    headline=lambda args: f"bench wire: decoding {args.count} event payloads, best of {args.repeats}",
    measure=lambda args: bench_wire(args.count, args.repeats),
    report=_report,
    check=_check,
)
