"""Versioned rule sets: a schedule plus alert rules, valid from an instant on, and every version kept (pure).

A :class:`RuleSet` is a schedule plus alert rules, valid from an instant on; a :class:`RuleHistory` keeps every
version, so an event is judged by :meth:`RuleHistory.in_force` at the time it happened, also when it arrives late
from a device that was offline when the rules changed. A manual override or a pause is a new version too, valid from
the moment it was set.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from edge.protocol.times import as_utc, require_aware
from hub.alert_settings import AlertRules
from hub.alerts.schedule import Schedule, check_keys, parse_instant, parse_schedule, work_time_between


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One version of the rules: a schedule and alert rules, in force from ``valid_from`` until the next version."""

    version: int
    valid_from: datetime
    schedule: Schedule
    rules: AlertRules

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ValueError(f"rule set version must be an integer >= 1, got {self.version!r}")
        object.__setattr__(self, "valid_from", as_utc(self.valid_from, f"rule set {self.version}: valid_from"))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (times ISO 8601 in UTC)."""
        return {
            "version": self.version,
            "valid_from": self.valid_from.isoformat(),
            "schedule": self.schedule.to_dict(),
            "rules": self.rules.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object], where: str = "ruleset") -> RuleSet:
        """Read back what :meth:`to_dict` wrote; raises ValueError naming the key that is wrong."""
        check_keys(data, {"version", "valid_from", "schedule", "rules"}, {"version", "valid_from", "schedule"}, where)
        version = data["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"{where}.version: must be an integer, got {version!r}")
        schedule = data["schedule"]
        if not isinstance(schedule, Mapping):
            raise ValueError(f"{where}.schedule: must be a table/object, got {schedule!r}")
        rules = data.get("rules", {})
        if not isinstance(rules, Mapping):
            raise ValueError(f"{where}.rules: must be a table/object, got {rules!r}")
        try:
            return cls(
                version=version,
                valid_from=parse_instant(data["valid_from"], f"{where}.valid_from"),
                schedule=parse_schedule(schedule, f"{where}.schedule"),
                rules=AlertRules.from_dict(rules, f"{where}.rules"),
            )
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            raise ValueError(f"{where}: {exc}") from None


@dataclass(slots=True)
class RuleHistory:
    """Every rule set version, oldest first; versions and ``valid_from`` both strictly increase."""

    versions: list[RuleSet] = field(default_factory=list)

    def __post_init__(self) -> None:
        versions, self.versions = list(self.versions), []
        for ruleset in versions:
            self.add(ruleset)

    def add(self, ruleset: RuleSet) -> None:
        """Append a new version; refuses one whose version or ``valid_from`` does not come after the latest."""
        if self.versions:
            latest = self.versions[-1]
            if ruleset.version <= latest.version:
                raise ValueError(f"rule set version {ruleset.version} must be greater than {latest.version}")
            if ruleset.valid_from <= latest.valid_from:
                raise ValueError(
                    f"rule set {ruleset.version} valid_from {ruleset.valid_from.isoformat()} must be after "
                    f"{latest.valid_from.isoformat()} (version {latest.version})"
                )
        self.versions.append(ruleset)

    @property
    def latest(self) -> RuleSet:
        """The newest version."""
        if not self.versions:
            raise LookupError("the rule history is empty")
        return self.versions[-1]

    def in_force(self, at: datetime) -> RuleSet:
        """The version in force at ``at``: the one with the latest ``valid_from`` at or before it.

        An instant before the first version is judged by the first version (there were no other rules).
        """
        require_aware(at, "at")
        if not self.versions:
            raise LookupError("the rule history is empty")
        index = bisect.bisect_right([r.valid_from for r in self.versions], at.astimezone(UTC)) - 1
        return self.versions[max(index, 0)]

    def spans(self, start: datetime, end: datetime) -> list[tuple[RuleSet, datetime, datetime]]:
        """The versions in force over ``[start, end)``, each with the part of it that it covers (in time order)."""
        require_aware(start, "start")
        require_aware(end, "end")
        out: list[tuple[RuleSet, datetime, datetime]] = []
        if end <= start or not self.versions:
            return out
        for index, ruleset in enumerate(self.versions):
            begin = ruleset.valid_from if index else datetime.min.replace(tzinfo=UTC)
            until = self.versions[index + 1].valid_from if index + 1 < len(self.versions) else None
            lo = max(start, begin)
            hi = end if until is None else min(end, until)
            if lo < hi:
                out.append((ruleset, lo, hi))
        return out

    def work_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Work time in ``[start, end)``, each part judged by the schedule in force then."""
        return sum(
            (work_time_between(ruleset.schedule, lo, hi) for ruleset, lo, hi in self.spans(start, end)),
            timedelta(0),
        )

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict: ``{"versions": [...]}``."""
        return {"versions": [ruleset.to_dict() for ruleset in self.versions]}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RuleHistory:
        """Read back what :meth:`to_dict` wrote; raises ValueError naming the key that is wrong."""
        check_keys(data, {"versions"}, {"versions"}, "rule history")
        versions = data["versions"]
        if not isinstance(versions, list):
            raise ValueError(f"rule history.versions: must be a list, got {versions!r}")
        rulesets = []
        for index, item in enumerate(versions):
            if not isinstance(item, Mapping):
                raise ValueError(f"rule history.versions[{index}]: must be an object, got {item!r}")
            rulesets.append(RuleSet.from_dict(item, f"rule history.versions[{index}]"))
        return cls(rulesets)
