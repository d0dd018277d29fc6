"""The ``rollcall bench`` command (``make bench``): figures and ratios against a baseline measured in the same run.

Targets: ``wire`` (strict decoding), ``edge`` (the recognition pipeline), ``link`` (outbox drain and latency),
``hub`` (ingest), ``site`` (a day of 100 doors and 10,000 people: ingest, sign-off, a month's report, presence,
memory), ``agent`` (workstation agent), ``tui`` (presence board), ``flood`` (a good door's acks while another
publisher floods the hub) and ``soak`` (every process for N minutes, memory growth per hour); each lives in its own
module here and is run by ``rollcall.bench.runner``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rollcall.bench.runner import Benchmark, run_benchmark

TARGETS = ("wire", "edge", "link", "hub", "site", "agent", "tui", "flood", "soak")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rollcall bench``."""
    parser.add_argument("target", nargs="?", default="wire", choices=list(TARGETS), help="what to measure")
    parser.add_argument("--seconds", type=float, default=60.0, help="agent: how long to run (60)")
    parser.add_argument("--minutes", type=float, default=30.0, help="soak: how long to run (30)")
    parser.add_argument(
        "--switch-every",
        type=float,
        default=None,
        help="soak: seconds between two TUI view switches (default: 30, or a twelfth of a shorter run, at least 5)",
    )
    parser.add_argument("--events", type=int, default=10_000, help="link: events queued before the drain (10000)")
    parser.add_argument("--clip", choices=["door", "street"], default="door", help="edge: which clip (door)")
    parser.add_argument(
        "--faces", type=Path, default=None, help="edge, soak: photo folders (default $ROLLCALL_FACES_DIR)"
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="edge, soak: models (default $ROLLCALL_MODEL_DIR)")
    parser.add_argument("--pack", default=None, help="edge: model pack (default: the manifest's default)")
    parser.add_argument("--threads", type=int, default=1, help="edge: ONNX Runtime threads, both sides (1)")
    parser.add_argument("--duration", type=float, default=90.0, help="edge: door clip length in seconds (90)")
    parser.add_argument("--seed", type=int, default=7, help="edge: door clip seed (7)")
    parser.add_argument("--count", type=int, default=20_000, help="payloads per run (flood: junk messages)")
    parser.add_argument("--flood-rate", type=float, default=10_000.0, help="flood: junk messages/s at most (10000)")
    parser.add_argument("--people", type=int, default=10_000, help="site: people enrolled (10000)")
    parser.add_argument("--doors", type=int, default=100, help="site: doors, half in, half out (100)")
    parser.add_argument(
        "--pace",
        type=float,
        default=100.0,
        help="site: the morning rush at this many times real time (100: 10,000 arrivals in 18 s); 0: at once",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs; the best is reported")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")


def _benchmark(target: str) -> Benchmark:
    # Each benchmark imports its subject (models, hub, TUI) with it: only the chosen one is loaded.
    if target == "edge":
        from rollcall.bench.edge import BENCHMARK
    elif target == "link":
        from rollcall.bench.link import BENCHMARK
    elif target == "hub":
        from rollcall.bench.hub import BENCHMARK
    elif target == "site":
        from rollcall.bench.site import BENCHMARK
    elif target == "agent":
        from rollcall.bench.agent import BENCHMARK
    elif target == "tui":
        from rollcall.bench.tui import BENCHMARK
    elif target == "flood":
        from rollcall.bench.flood import BENCHMARK
    elif target == "soak":
        from rollcall.bench.soak import BENCHMARK
    else:
        from rollcall.bench.wire import BENCHMARK
    return BENCHMARK


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark and print its figures."""
    return run_benchmark(_benchmark(args.target), args)
