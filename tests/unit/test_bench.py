"""`rollcall bench wire` runs both sides and reports consistent figures."""

from __future__ import annotations

import json

import pytest

from rollcall.cli import main


def test_bench_wire_reports_both_sides_and_their_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "wire", "--count", "200", "--repeats", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(figures) == {"wire_decode_per_s", "json_loads_per_s", "strict_cost_ratio", "payload_bytes"}
    assert figures["wire_decode_per_s"] > 0 and figures["json_loads_per_s"] > 0
    assert figures["strict_cost_ratio"] == pytest.approx(
        figures["json_loads_per_s"] / figures["wire_decode_per_s"], rel=0.01
    )


def test_bench_refuses_nonsense_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "wire", "--count", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
