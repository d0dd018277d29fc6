"""One runner for every ``rollcall bench`` target: check the options, say what runs, measure, print, JSON last."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rollcall.exit_codes import EXIT_BAD_INPUT, EXIT_OK

Figures = Mapping[str, Any]
"""What a benchmark measured, by name; ``--json`` prints it as one line."""


def _nothing_to_check(args: argparse.Namespace) -> str | None:
    return None


def at_least(target: str, option: str, least: int) -> Callable[[argparse.Namespace], str | None]:
    """A :attr:`Benchmark.check` refusing ``--option`` below ``least`` (fewer would measure noise, not speed)."""

    def check(args: argparse.Namespace) -> str | None:
        value = getattr(args, option.removeprefix("--").replace("-", "_"))
        return f"rollcall bench {target}: {option} must be at least {least}" if value < least else None

    return check


@dataclass(frozen=True)
class Benchmark:
    """How ``rollcall bench TARGET`` runs; every step is given the command's options."""

    headline: Callable[[argparse.Namespace], str]
    """The line printed before measuring: what runs, and how."""
    measure: Callable[[argparse.Namespace], Figures]
    report: Callable[[Figures, argparse.Namespace], list[str]]
    """The figures as the lines a person reads."""
    check: Callable[[argparse.Namespace], str | None] = _nothing_to_check
    """Why the benchmark cannot run with these options (printed on standard error, exit 2), or None."""
    public: Callable[[Figures], Figures] | None = None
    """The figures ``--json`` prints, when not all of them (a contract fixes the keys); None: all."""


def run_benchmark(benchmark: Benchmark, args: argparse.Namespace) -> int:
    """Run one benchmark: refuse bad options, print the headline, measure, print the report (and ``--json``)."""
    problem = benchmark.check(args)
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    print(benchmark.headline(args), flush=True)
    figures = benchmark.measure(args)
    for line in benchmark.report(figures, args):
        print(line)
    if args.json:
        print(json.dumps(dict(figures) if benchmark.public is None else dict(benchmark.public(figures))))
    return EXIT_OK


def percentile(values: list[float], share: float) -> float:
    """The value ``share`` of the way up sorted ``values`` (no interpolation); NaN when there are none."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(share * len(values)))]
