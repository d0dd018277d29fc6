"""The event window: which event times may move presence and attendance, judged against the hub's clock (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.domain.presence import EventWindow

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "offset",
    [timedelta(0), timedelta(minutes=5), -timedelta(days=180), -timedelta(hours=30)],
    ids=["now", "at-the-allowed-lead", "at-the-retention", "a-day-late"],
)
def test_times_within_the_window_count(offset: timedelta) -> None:
    assert EventWindow().refusal(NOW + offset, NOW) is None


def test_a_time_far_ahead_is_refused_with_the_fix() -> None:
    reason = EventWindow().refusal(datetime(2099, 1, 1, tzinfo=UTC), NOW)
    assert reason is not None
    assert "2099-01-01T00:00:00+00:00" in reason and "days ahead of the hub's clock" in reason
    assert "5 min" in reason and "NTP" in reason


def test_a_time_just_past_the_allowed_lead_is_refused() -> None:
    window = EventWindow(max_ahead=timedelta(seconds=10))
    assert window.refusal(NOW + timedelta(seconds=10), NOW) is None
    assert "11 s ahead" in (window.refusal(NOW + timedelta(seconds=11), NOW) or "")


def test_a_time_before_the_retention_is_refused() -> None:
    reason = EventWindow(max_behind=timedelta(days=30)).refusal(NOW - timedelta(days=31), NOW)
    assert reason is not None and "31 days before it arrived" in reason and "30 days retention" in reason


def test_naive_times_and_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        EventWindow().refusal(datetime(2026, 11, 23, 9, 0), NOW)
    with pytest.raises(ValueError):
        EventWindow(max_ahead=-timedelta(seconds=1))
    with pytest.raises(ValueError):
        EventWindow(max_behind=timedelta(0))
