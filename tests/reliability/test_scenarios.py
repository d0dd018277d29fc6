"""Each reliability scenario as a pytest test (``pytest -m reliability tests/reliability -k door-kill``).

``make reliability`` runs them all side by side through ``python -m tests.reliability`` instead, for the figures;
these are for running one while working on it. ``ROLLCALL_RELIABILITY_SCALE`` (default 1) shortens them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.scenarios import SCENARIOS, Scenario

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(1800)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_loses_nothing(scenario: Scenario, tmp_path: Path) -> None:
    result = scenario.run(tmp_path, float(os.environ.get("ROLLCALL_RELIABILITY_SCALE", "1")))
    print(result.line())
    assert result.ok, result.line()
