"""``python -m tests.reliability`` (``make reliability``): every scenario side by side, one line each, JSON last.

Exits 1 when a scenario lost or duplicated anything, a database failed its quick check, or a scenario's own check
failed; the last line is one JSON object with exactly the keys ``scenarios``, ``produced``, ``lost``, ``duplicated``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

from tests.reliability.harness import Result, summary_json
from tests.reliability.scenarios import SCENARIOS, Scenario


def _run(scenario: Scenario, root: Path, scale: float) -> Result:
    started = time.monotonic()
    try:
        return scenario.run(root / scenario.name, scale)
    except Exception as exc:  # one broken scenario must not hide the others' figures
        traceback.print_exc(file=sys.stderr)
        result = Result(scenario.name, problems=[f"crashed: {type(exc).__name__}: {exc}"])
        result.seconds = time.monotonic() - started
        return result


def main() -> int:
    """Run the chosen scenarios (all by default) concurrently and report."""
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--only", nargs="*", choices=[s.name for s in SCENARIOS], help="run only these scenarios")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply fault counts and outage lengths (1.0)")
    parser.add_argument("--jobs", type=int, default=6, help="scenarios running at once (6)")
    parser.add_argument("--keep", type=Path, default=None, help="keep every scenario's files (logs, databases) here")
    args = parser.parse_args()
    if args.scale <= 0 or args.jobs < 1:
        parser.error("--scale must be positive and --jobs at least 1")
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    root = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="rollcall-reliability-"))
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"reliability: {len(chosen)} scenarios, {args.jobs} at a time, scale {args.scale:g}, files in {root}",
        flush=True,
    )
    results: list[Result] = []
    with ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="scenario") as pool:
        futures: dict[Future[Result], Scenario] = {pool.submit(_run, s, root, args.scale): s for s in chosen}
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            print(result.line(), flush=True)
    failed = [r for r in results if not r.ok]
    if args.keep is None and not failed:
        shutil.rmtree(root, ignore_errors=True)
    elif failed:
        print(f"reliability: {len(failed)} scenario(s) failed; their files are in {root}", flush=True)
    print(summary_json(results), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
