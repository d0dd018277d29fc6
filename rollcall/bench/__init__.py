"""Benchmarks behind ``make bench`` / ``rollcall bench``: figures and ratios against a baseline in the same run.

``wire``: how many event payloads per second the strict wire decoder validates, against plain ``json.loads`` (the
floor any decoder pays) measured side by side on the same payloads, so the cost of strictness is a ratio, not a
guess. Later parts add ``edge``, ``link`` and ``hub``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ulid import ULID

from edge.protocol import wire


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rollcall bench``."""
    parser.add_argument(
        "target",
        nargs="?",
        default="wire",
        choices=["wire", "edge", "link", "hub", "agent", "tui"],
        help="what to measure",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="agent: how long to run (60)")
    parser.add_argument("--events", type=int, default=10_000, help="link: events queued before the drain (10000)")
    parser.add_argument("--clip", choices=["door", "street"], default="door", help="edge: which clip (door)")
    parser.add_argument("--faces", type=Path, default=None, help="edge: photo folders (default $ROLLCALL_FACES_DIR)")
    parser.add_argument("--model-dir", type=Path, default=None, help="edge: models (default $ROLLCALL_MODEL_DIR)")
    parser.add_argument("--pack", default=None, help="edge: model pack (default: the manifest's default)")
    parser.add_argument("--threads", type=int, default=1, help="edge: ONNX Runtime threads, both sides (1)")
    parser.add_argument("--duration", type=float, default=90.0, help="edge: door clip length in seconds (90)")
    parser.add_argument("--seed", type=int, default=7, help="edge: door clip seed (7)")
    parser.add_argument("--count", type=int, default=20_000, help="payloads per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the best is reported")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")


def run_edge(args: argparse.Namespace) -> int:
    """``rollcall bench edge``: our pipeline against the naive baseline on a door or street clip."""
    import os

    from edge.recognition.engine import build_engine
    from edge.recognition.packs import ModelError
    from rollcall.bench.edge import bench_edge

    faces = args.faces or (Path(os.environ["ROLLCALL_FACES_DIR"]) if os.environ.get("ROLLCALL_FACES_DIR") else None)
    if faces is None or not faces.is_dir():
        print("rollcall bench edge: set --faces or ROLLCALL_FACES_DIR to a folder of photo folders", file=sys.stderr)
        return 2
    try:
        build_engine(args.pack, args.model_dir, threads=args.threads)  # fail early, with advice, if models are missing
    except ModelError as exc:
        print(f"rollcall bench edge: {exc}", file=sys.stderr)
        return 2
    print(
        f"bench edge: {args.clip} clip, pack {args.pack or 'default'}, {args.threads} thread(s) each side", flush=True
    )
    figures = bench_edge(
        args.clip,
        faces,
        lambda: build_engine(args.pack, args.model_dir, threads=args.threads),
        seed=args.seed,
        duration_s=args.duration,
    )
    print(
        f"  ours     : {figures['ours_fps']:>8.1f} frames/s, {figures['cpu_s_per_frame'] * 1000:.2f} ms CPU/frame, "
        f"{figures['rec_calls_per_face_frame']:.3f} recognitions per face-frame"
    )
    print(
        f"  baseline : {figures['baseline_fps']:>8.1f} frames/s, "
        f"{figures['baseline_cpu_s_per_frame'] * 1000:.2f} ms CPU/frame, "
        f"{figures['baseline_rec_calls_per_face_frame']:.3f} recognitions per face-frame"
    )
    print(f"  ratio    : {figures['ratio']:.2f}x")
    print(
        f"  identity : ours {figures['identity_accuracy']:.3f}, baseline {figures['baseline_identity_accuracy']:.3f}"
        f" ({'ground truth' if args.clip == 'door' else 'agreement with the baseline per track'})"
    )
    print(
        f"  empty door at 10 fps: {figures['empty_door_cpu_percent_at_10fps']:.1f} % of one core; "
        f"peak RSS {figures['rss_mb']:.0f} MB"
    )
    if args.json:
        print(json.dumps(figures))
    return 0


def run_link(args: argparse.Namespace) -> int:
    """``rollcall bench link``: outbox drain after an outage and confirm-to-commit latency."""
    from rollcall.bench.link import bench_link

    if args.events < 100:
        print("rollcall bench link: --events must be at least 100", file=sys.stderr)
        return 2
    print(f"bench link: drain of {args.events} queued events, then latency at 100 events/s", flush=True)
    figures = bench_link(events=args.events, baseline_events=max(100, args.events // 10))
    print(f"  drain    : {figures['drain_events_per_s']:>8} events/s (window 100)")
    print(f"  baseline : {figures['baseline_drain_events_per_s']:>8} events/s (stop-and-wait)")
    print(f"  ratio    : {figures['drain_ratio']:.1f}x")
    print(
        f"  latency  : p50 {figures['latency_p50_ms']} ms, p95 {figures['latency_p95_ms']} ms "
        f"({figures['latency_samples']} events, confirmed to committed at the receiver; broker {figures['broker']})"
    )
    if args.json:
        print(json.dumps(figures))
    return 0


def run_hub(args: argparse.Namespace) -> int:
    """``rollcall bench hub``: batched ingest against one commit per event, latency, a 10,000-person gallery."""
    from rollcall.bench.hub import bench_hub

    if args.events < 1000:
        print("rollcall bench hub: --events must be at least 1000", file=sys.stderr)
        return 2
    print(f"bench hub: ingest of {args.events} events, latency at 100 events/s, gallery of 10,000 people", flush=True)
    figures = bench_hub(events=args.events)
    print(f"  ingest   : {figures['ingest_events_per_s']:>8} events/s (batched, one writer)")
    print(f"  baseline : {figures['naive_events_per_s']:>8} events/s (one commit per event)")
    print(f"  ratio    : {figures['ratio']}x")
    print(f"  latency  : p95 {figures['latency_p95_ms']} ms publish -> ack after commit, at 100 events/s")
    print(
        f"  gallery  : 10,000 people = {figures['gallery_10k_bytes']:,} bytes on the wire, "
        f"swapped in after {figures['gallery_10k_swap_s']} s"
    )
    if args.json:
        print(json.dumps(figures))
    return 0


def run_agent(args: argparse.Namespace) -> int:
    """``rollcall bench agent``: bytes per hour, CPU and thumbnail latency of a workstation agent."""
    from rollcall.bench.agent import bench_agent

    if args.seconds < 20:
        print("rollcall bench agent: --seconds must be at least 20", file=sys.stderr)
        return 2
    print(f"bench agent: {args.seconds:.0f} s on a still desktop with a change every 10 s", flush=True)
    figures = bench_agent(seconds=args.seconds)
    print(f"  published : {figures['bytes_per_hour']:>10,} bytes/hour ({figures['thumbnails']} thumbnails)")
    print(f"  baseline  : {figures['naive_bytes_per_hour']:>10,} bytes/hour (a thumbnail every interval)")
    print(f"  ratio     : {figures['ratio']}x")
    print(f"  CPU       : {figures['agent_cpu_percent']} % of one core")
    print(
        f"  latency   : change -> thumbnail at a subscriber p50 {figures['thumbnail_latency_p50_s']} s, "
        f"max {figures['thumbnail_latency_max_s']} s"
    )
    if args.json:
        print(json.dumps(figures))
    return 0


def run_tui(args: argparse.Namespace) -> int:
    """``rollcall bench tui``: hub commit → presence row latency, and TUI CPU with 100 workstations."""
    from rollcall.bench.tui import bench_tui

    print("bench tui: 40 arrivals on the board, then 100 workstations sending thumbnails every 5 s", flush=True)
    figures = bench_tui()
    print(
        f"  board    : p50 {figures['board_latency_p50_ms']} ms, p95 {figures['board_latency_p95_ms']} ms "
        "from the hub's commit to the row showing IN"
    )
    print(
        f"  CPU      : {figures['tui_cpu_percent_with_100_workstations']} % of one core with 100 workstations "
        f"(idle: {figures['tui_cpu_percent_idle']} %)"
    )
    if args.json:
        print(json.dumps(figures))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark and print its figures."""
    if args.target == "tui":
        return run_tui(args)
    if args.target == "agent":
        return run_agent(args)
    if args.target == "hub":
        return run_hub(args)
    if args.target == "link":
        return run_link(args)
    if args.target == "edge":
        return run_edge(args)
    if args.count < 1 or args.repeats < 1:
        print("rollcall bench: --count and --repeats must be at least 1", file=sys.stderr)
        return 2
    print(f"bench wire: decoding {args.count} event payloads, best of {args.repeats}", flush=True)
    figures = bench_wire(args.count, args.repeats)
    print(f"  strict wire.decode : {figures['wire_decode_per_s']:>10,.0f} events/s")
    print(f"  baseline json.loads: {figures['json_loads_per_s']:>10,.0f} events/s")
    print(f"  strictness costs   : {figures['strict_cost_ratio']:>10.2f}x the bare parse")
    if args.json:
        print(json.dumps(figures))
    return 0
