"""`rollcall bench site` at a small scale: the day goes through the broker into a hub process and is signed off."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from rollcall.bench.site import DAY, FORGETFUL_SHARE, door_ids, generate_day
from rollcall.cli import main


def test_the_generated_day_has_a_rush_lunch_and_forgotten_check_outs() -> None:
    people = [f"p-{i:04d}" for i in range(1000)]
    on_time, late, rush_end = generate_day(people, 10)
    entrances, exits = door_ids(10)
    day = on_time + late
    arrivals: dict[str, float] = {}
    for at, door, person, _ in day:
        if door in entrances:
            arrivals[person] = min(at, arrivals.get(person, at))
    assert set(arrivals) == set(people)
    assert all(rush_end - 1800 <= at <= rush_end for at in arrivals.values())  # everybody in the half hour
    exits_per_person: dict[str, int] = {}
    for _, door, person, _ in day:
        if door in exits:
            exits_per_person[person] = exits_per_person.get(person, 0) + 1
    forgot = sum(1 for p in people if exits_per_person.get(p) == 1)  # out for lunch, never out at night
    assert 0 < forgot < 3 * FORGETFUL_SHARE * len(people)
    assert {door for _, door, _, _ in late} == {entrances[0], exits[0]}  # two doors deliver late
    assert not {door for _, door, _, _ in on_time} & {entrances[0], exits[0]}
    assert all(datetime.fromtimestamp(at, UTC).date() == DAY for at, _, _, _ in day)


def test_bench_site_small_signs_off_everybody_and_prints_the_five_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "site", "--people", "200", "--doors", "5", "--json"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    print(out)  # the figures, for whoever runs this (never asserted on: timings vary with the machine)
    figures = json.loads(lines[-1])
    assert set(figures) == {"speedup_vs_realtime", "signoff_s", "month_report_s", "presence_p95_ms", "hub_rss_mb"}
    assert all(isinstance(value, float | int) and value > 0 for value in figures.values())
    assert re.search(r"sign-off : .* s for 200 days", out), "every person's day must be signed off"
    assert re.search(r"month    : .* s for 6000 rows", out), "the report covers 30 days of 200 people"
    arrivals = re.search(r"presence : .*\((\d+) arrivals, boards of 200 rows\)", out)
    assert arrivals is not None and int(arrivals.group(1)) > 100  # the on-time arrivals each showed IN


def test_bench_site_refuses_a_site_too_small(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "site", "--people", "5"]) == 2
    assert "--people must be at least 10" in capsys.readouterr().err
