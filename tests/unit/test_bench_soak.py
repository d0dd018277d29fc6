"""The soak's arithmetic: the growth line through the samples and the warm-up it leaves out."""

from __future__ import annotations

import os

import pytest

from rollcall.bench.soak import Samples, count_open_files, growth, read_rss_mb, slope_per_hour, warm_up_s


def test_the_slope_is_per_hour() -> None:
    times = [0.0, 600.0, 1200.0, 1800.0]
    assert slope_per_hour(times, [100.0, 101.0, 102.0, 103.0]) == pytest.approx(6.0)
    assert slope_per_hour(times, [50.0, 50.0, 50.0, 50.0]) == 0.0
    assert slope_per_hour([5.0], [1.0]) == 0.0


def test_the_warm_up_is_left_out_of_the_fit() -> None:
    # Start-up grows fast (imports, caches), then flat: only the flat part may count.
    samples = Samples("tui", 1, times=[0, 60, 120, 600, 1200, 1800], rss_mb=[20, 60, 75, 75, 75, 75], fds=[5] * 6)
    figures = growth(samples, warm_up=warm_up_s(1800))
    assert figures["growth_mb_per_h"] == 0.0
    assert figures["samples"] == 3
    assert figures["rss_start_mb"] == 75.0


def test_this_process_can_be_sampled() -> None:
    assert read_rss_mb(os.getpid()) > 1.0
    assert count_open_files(os.getpid()) >= 3
