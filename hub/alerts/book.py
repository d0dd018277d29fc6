"""The alert book: how conditions fold into alerts, and how alerts stand, are acknowledged and resolve (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias, get_args

from ulid import ULID

from edge.protocol import wire
from edge.protocol.times import as_utc, require_aware
from hub.alert_settings import RULE_NAME, is_whole_number
from hub.alerts.rules import Condition
from hub.notify.notification import SEVERITIES, Severity

AlertState: TypeAlias = Literal["open", "acknowledged", "resolved"]
ALERT_STATES: frozenset[str] = frozenset(get_args(AlertState))

ChangeKind: TypeAlias = Literal["opened", "folded", "acknowledged", "resolved"]


# --- the alert book --------------------------------------------------------------------------------------------

RESOLVED_KEPT_FOR = timedelta(days=7)
"""Resolved alerts whose episode is over stay in the book (and in ``alerts.list``) this long."""
RESOLVED_KEPT_MAX = 500
"""At most this many of them, the newest: the book is saved whole on every change and sent whole to every TUI, so it
must not grow with the site's age. What happened stays in the audit journal and the notifications."""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert as it stands. ``live``: its episode goes on, so occurrences still fold into it (see the book)."""

    alert_id: str
    rule: str
    key: tuple[str, str]
    severity: Severity
    subject: str
    message: str
    state: AlertState
    first_at: datetime
    last_at: datetime
    count: int
    device: str | None
    person_id: str | None
    momentary: bool
    fold_window_s: float | None
    live: bool
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (times ISO 8601 in UTC, key as a 2-item list)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AlertRecord:
        """Read back what :meth:`to_dict` wrote; raises ValueError naming the field that is wrong."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"alert record: unknown field {unknown[0]!r}")
        values: dict[str, object] = {}
        for name in names:
            if name not in data:
                if name in ("acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at"):
                    continue
                raise ValueError(f"alert record: missing field {name!r}")
            value = data[name]
            if name.endswith("_at") and value is not None:
                if not isinstance(value, str):
                    raise ValueError(f"alert record: {name} must be an ISO 8601 string, got {value!r}")
                try:
                    value = as_utc(datetime.fromisoformat(value), name)
                except ValueError:
                    raise ValueError(f"alert record: {name} is not an ISO 8601 time with offset: {value!r}") from None
            elif name == "key":
                if not isinstance(value, list | tuple) or len(value) != 2 or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"alert record: key must be a list of two strings, got {value!r}")
                value = (value[0], value[1])
            values[name] = value
        record = cls(**values)  # type: ignore[arg-type]
        _check_record(record)
        return record


def _check_record(record: AlertRecord) -> None:
    checks = {
        "alert_id": isinstance(record.alert_id, str) and bool(re.match(r"^[0-9A-HJKMNP-TV-Z]{26}$", record.alert_id)),
        "rule": isinstance(record.rule, str) and bool(RULE_NAME.match(record.rule)) and record.key[0] == record.rule,
        "severity": record.severity in SEVERITIES,
        "state": record.state in ALERT_STATES,
        "count": is_whole_number(record.count) and record.count >= 1,
        "subject": isinstance(record.subject, str),
        "message": isinstance(record.message, str),
        "momentary": isinstance(record.momentary, bool),
        "live": isinstance(record.live, bool),
        "fold_window_s": record.fold_window_s is None
        or (isinstance(record.fold_window_s, int | float) and not isinstance(record.fold_window_s, bool)),
    }
    for name, ok in checks.items():
        if not ok:
            raise ValueError(f"alert record: {name} is not valid: {getattr(record, name)!r}")


@dataclass(frozen=True, slots=True)
class AlertChange:
    """What one step did to one alert; ``alert`` is the alert after it (publish ``to_wire(change.alert)``)."""

    kind: ChangeKind
    alert: AlertRecord


def to_wire(alert: AlertRecord) -> wire.Alert:
    """The wire payload of an alert (subject and message cut to the contract's limits)."""
    return wire.Alert(
        alert_id=alert.alert_id,
        rule=alert.rule,
        severity=alert.severity,
        state=alert.state,
        subject=_cut(alert.subject, 256),
        message=_cut(alert.message, 2000),
        first_at=alert.first_at,
        last_at=alert.last_at,
        count=alert.count,
        device=alert.device,
        person_id=alert.person_id,
        acknowledged_by=None if alert.acknowledged_by is None else _cut(alert.acknowledged_by, 256),
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AlertBook:
    """Every alert and its state: a pure state machine driven by conditions and people, with ``now`` passed in.

    Folding (:meth:`apply`): each key has at most one *live* alert, the one whose episode goes on.

    - A lasting condition (state rule) that holds while its key has a live alert changes nothing (no count, no
      publish: it is the same episode). Otherwise it opens a new alert (count 1).
    - A momentary condition (event rule) folds into the key's live alert: count + 1, ``first_at``/``last_at``
      widened to include it. With a ``fold_window`` (``unknown_face``), the episode ends once the window passes
      after its last occurrence: an occurrence that late opens a new alert, and the book resolves the old one itself
      at the first :meth:`apply` with ``now >= last_at + window``.
    - A cleared condition ends the key's episode and resolves its alert if it is open or acknowledged (auto: no
      ``resolved_by``). A later firing opens a NEW alert.
    - Acknowledged alerts keep folding (count, last_at) and stay acknowledged. A resolved-by-hand alert's episode
      goes on until its condition clears (or its window passes): occurrences meanwhile fold into it silently and it
      stays resolved (the supervisor is not paged again for what they have handled).
    """

    def __init__(self, alerts: Iterable[AlertRecord] = ()) -> None:
        self._alerts: dict[str, AlertRecord] = {}
        self._live: dict[tuple[str, str], str] = {}
        for alert in alerts:
            if alert.alert_id in self._alerts:
                raise ValueError(f"alert {alert.alert_id} appears twice")
            if alert.live and alert.key in self._live:
                raise ValueError(f"key {alert.key} has two live alerts")
            self._alerts[alert.alert_id] = alert
            if alert.live:
                self._live[alert.key] = alert.alert_id

    # -- reading --

    def get(self, alert_id: str) -> AlertRecord:
        """One alert by id (KeyError when unknown)."""
        try:
            return self._alerts[alert_id]
        except KeyError:
            raise KeyError(f"no alert {alert_id!r}") from None

    def alerts(self) -> list[AlertRecord]:
        """Every alert, in the order they were opened."""
        return list(self._alerts.values())

    def open_alerts(self) -> list[AlertRecord]:
        """Alerts that are open or acknowledged, in the order they were opened."""
        return [a for a in self._alerts.values() if a.state != "resolved"]

    def live_alert(self, key: tuple[str, str]) -> AlertRecord | None:
        """The alert whose episode goes on for ``key``, if any."""
        alert_id = self._live.get(key)
        return None if alert_id is None else self._alerts[alert_id]

    @staticmethod
    def to_wire(alert: AlertRecord) -> wire.Alert:
        """Same as the module's :func:`to_wire`."""
        return to_wire(alert)

    # -- changing --

    def apply(self, conditions: Iterable[Condition], now: datetime) -> list[AlertChange]:
        """Fold conditions into alerts (in time order), then resolve momentary episodes whose window has passed."""
        require_aware(now, "now")
        now = now.astimezone(UTC)
        changes: list[AlertChange] = []
        for condition in sorted(conditions, key=lambda c: c.at):
            if condition.active:
                self._fire(condition, now, changes)
            else:
                live = self.live_alert(condition.key)
                if live is not None:
                    self._end(live, now, changes)
        for alert_id in list(self._live.values()):
            alert = self._alerts[alert_id]
            if alert.fold_window_s is not None and now >= alert.last_at + timedelta(seconds=alert.fold_window_s):
                self._end(alert, now, changes)
        self.forget_old(now)
        return changes

    def forget_old(self, now: datetime) -> int:
        """Drop resolved alerts whose episode is over; returns how many were dropped.

        Those older than RESOLVED_KEPT_FOR or beyond the newest RESOLVED_KEPT_MAX go; open, acknowledged and live
        alerts always stay.
        """
        require_aware(now, "now")
        finished = sorted(
            (a for a in self._alerts.values() if a.state == "resolved" and not a.live),
            key=lambda a: a.resolved_at or a.last_at,
            reverse=True,
        )
        cutoff = now.astimezone(UTC) - RESOLVED_KEPT_FOR
        dropped = [a for i, a in enumerate(finished) if i >= RESOLVED_KEPT_MAX or (a.resolved_at or a.last_at) < cutoff]
        for alert in dropped:
            del self._alerts[alert.alert_id]
        return len(dropped)

    def acknowledge(self, alert_id: str, by: str, now: datetime) -> AlertChange | None:
        """A supervisor takes an open alert on; None when it was already acknowledged. Resolved: ValueError."""
        require_aware(now, "now")
        _check_who(by)
        alert = self.get(alert_id)
        if alert.state == "resolved":
            raise ValueError(f"alert {alert_id} is already resolved")
        if alert.state == "acknowledged":
            return None
        return self._put(
            "acknowledged",
            replace(alert, state="acknowledged", acknowledged_by=by, acknowledged_at=now.astimezone(UTC)),
        )

    def resolve(self, alert_id: str, by: str, now: datetime) -> AlertChange | None:
        """A supervisor resolves an alert by hand; None when it was already resolved.

        Its episode goes on (see the class docstring), so the same condition does not open a new alert until it has
        cleared.
        """
        require_aware(now, "now")
        _check_who(by)
        alert = self.get(alert_id)
        if alert.state == "resolved":
            return None
        return self._put("resolved", replace(alert, state="resolved", resolved_by=by, resolved_at=now.astimezone(UTC)))

    def prune(self, resolved_before: datetime) -> int:
        """Forget resolved alerts resolved before the given time whose episode has ended; returns how many."""
        require_aware(resolved_before, "resolved_before")
        gone = [
            a.alert_id
            for a in self._alerts.values()
            if a.state == "resolved" and not a.live and a.resolved_at is not None and a.resolved_at < resolved_before
        ]
        for alert_id in gone:
            del self._alerts[alert_id]
        return len(gone)

    def forget_person(self, person_id: str, name: str | None) -> list[AlertRecord]:
        """Erasure: drop every alert about the person or naming them (subject or message); returns those dropped.

        An alert is about them when its ``person_id`` or key names their id; it names them when the subject or
        message holds their id or (non-empty) name. Their live episodes end with them.
        """
        needles = [person_id] + ([name] if name else [])
        gone = [
            a
            for a in self._alerts.values()
            if a.person_id == person_id
            or person_id in a.key
            or any(needle in a.subject or needle in a.message for needle in needles)
        ]
        for alert in gone:
            del self._alerts[alert.alert_id]
            if self._live.get(alert.key) == alert.alert_id:
                del self._live[alert.key]
        return gone

    # -- persistence --

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict: ``{"alerts": [...]}`` in the order they were opened."""
        return {"alerts": [a.to_dict() for a in self._alerts.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AlertBook:
        """Read back what :meth:`to_dict` wrote."""
        if set(data) != {"alerts"} or not isinstance(data["alerts"], list):
            raise ValueError("alert book: expected {'alerts': [...]}")
        records = []
        for index, item in enumerate(data["alerts"]):
            if not isinstance(item, Mapping):
                raise ValueError(f"alert book: alerts[{index}] must be an object")
            records.append(AlertRecord.from_dict(item))
        return cls(records)

    # -- internals --

    def _put(self, kind: ChangeKind, alert: AlertRecord) -> AlertChange:
        self._alerts[alert.alert_id] = alert
        if alert.live:
            self._live[alert.key] = alert.alert_id
        elif self._live.get(alert.key) == alert.alert_id:
            del self._live[alert.key]
        return AlertChange(kind, alert)

    def _end(self, alert: AlertRecord, now: datetime, changes: list[AlertChange]) -> None:
        if alert.state == "resolved":
            self._put("resolved", replace(alert, live=False))  # ended quietly: it was resolved by hand already
            return
        changes.append(self._put("resolved", replace(alert, state="resolved", resolved_at=now, live=False)))

    def _fire(self, condition: Condition, now: datetime, changes: list[AlertChange]) -> None:
        live = self.live_alert(condition.key)
        if live is not None:
            window = live.fold_window_s
            if condition.momentary and window is not None and condition.at >= live.last_at + timedelta(seconds=window):
                self._end(live, now, changes)  # the episode ended before this occurrence
            elif condition.momentary:
                folded = replace(
                    live,
                    count=live.count + 1,
                    first_at=min(live.first_at, condition.at),
                    last_at=max(live.last_at, condition.at),
                )
                changes.append(self._put("folded", folded))
                return
            else:
                return  # a lasting condition that still holds: the same episode
        window_s = condition.fold_window.total_seconds() if condition.fold_window is not None else None
        alert = AlertRecord(
            alert_id=str(ULID.from_datetime(now)),
            rule=condition.rule,
            key=condition.key,
            severity=condition.severity,
            subject=condition.subject,
            message=condition.message,
            state="open",
            first_at=condition.at,
            last_at=condition.at,
            count=1,
            device=condition.device,
            person_id=condition.person_id,
            momentary=condition.momentary,
            fold_window_s=window_s,
            live=True,
        )
        changes.append(self._put("opened", alert))


def _check_who(by: str) -> None:
    if not isinstance(by, str) or not by.strip() or len(by) > 256:
        raise ValueError(f"who acknowledges or resolves must be a non-empty name of at most 256 characters, got {by!r}")
