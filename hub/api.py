"""The hub's request/reply API over the broker (for the TUI and scripts); every change is audited.

A supervisor asks on ``supervisor/<name>/request``: the broker's ACL lets only ``<name>`` write there, so the hub
takes the asker's name from the topic, never from the payload. A request names its method and carries its reply
topic (MQTT 3.1.1 has no response topic), which must be that supervisor's own ``supervisor/<name>/reply/<session>``.
Each method needs a role (:data:`METHOD_ROLES`); the hub config's ``[supervisors.<name>] role`` says who has which.
Methods are documented in docs/wire.md and docs/hub.md.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal, cast

from pydantic import JsonValue
from ulid import ULID

from edge.protocol import wire
from edge.protocol.times import iso_utc
from hub.alert_settings import AlertRules
from hub.alerts.book import to_wire
from hub.alerts.runtime import Alerting
from hub.alerts.schedule import is_work_time
from hub.board import PresenceBoard
from hub.context import HubContext
from hub.domain.attendance import local_day
from hub.enrol import AssessPhotos, EnrolmentWorker, OutsideImportDir, confine_to, confined_photo_paths
from hub.galleries import GalleryPublisher
from hub.store import NotFound, StoreError

log = logging.getLogger("rollcall.hub.api")

Role = Literal["viewer", "operator", "admin"]
ROLE_RANK: dict[Role, int] = {"viewer": 0, "operator": 1, "admin": 2}
"""Each role may do what the roles below it may."""

METHOD_ROLES: dict[str, Role] = {
    # read-only: every supervisor
    "people.list": "viewer",
    "presence.get": "viewer",
    "attendance.day": "viewer",
    "events.recent": "viewer",
    "devices.list": "viewer",
    "snapshot.get": "viewer",
    "alerts.list": "viewer",
    "schedule.get": "viewer",
    "site.info": "viewer",
    "agents.list": "viewer",
    "agents.activity": "viewer",
    "agents.files": "viewer",
    # day-to-day changes: acknowledge and resolve alerts, message and lock workstations, enrol (adding or renaming a
    # person is part of enrolling)
    "alerts.acknowledge": "operator",
    "agents.command": "operator",
    "alerts.resolve": "operator",
    "people.add": "operator",
    "people.rename": "operator",
    "people.enrol_photos": "operator",
    "people.enrol_at_device": "operator",
    # changes that erase data or change how the site is judged
    "people.remove": "admin",
    "schedule.set_mode": "admin",
    "devices.retire": "admin",
    "devices.rename": "admin",
    "devices.set_role": "admin",
}
"""The least role each method of :class:`RequestHandler` needs (a test checks every method is listed)."""


class Supervisors:
    """Who may ask what: the hub config's ``[supervisors]`` table, or everyone as admin when it is absent."""

    def __init__(self, table: Mapping[str, Role] | None) -> None:
        self.table = dict(table) if table is not None else None

    @property
    def open(self) -> bool:
        """No ``[supervisors]`` table: every supervisor name is admin (zero-config demos and tests)."""
        return self.table is None

    def role_of(self, name: str) -> Role | None:
        """The role of supervisor ``name``; None when the table does not list it."""
        if self.table is None:
            return "admin"
        return self.table.get(name)

    def refusal(self, name: str, method: str) -> str | None:
        """Why ``name`` may not call ``method`` (for the reply, the log and the audit), or None when it may."""
        needed = METHOD_ROLES.get(method, "admin")
        role = self.role_of(name)
        if role is None:
            return (
                f"supervisor {name!r} is not listed in this hub's [supervisors] table; "
                f"{method} needs the {needed} role (ask the site's admin to add [supervisors.{name}])"
            )
        if ROLE_RANK[role] < ROLE_RANK[needed]:
            article = "an" if role[0] in "aeiou" else "a"
            return f"{method} needs the {needed} role; supervisor {name!r} is {article} {role}"
        return None


class RequestError(Exception):
    """A request that cannot be served: a stable code and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Deferred:
    """A method's answer that takes long: ``work`` runs on the enrolment thread and its result is the reply."""

    work: Callable[[], JsonValue]


Method = Callable[[dict[str, JsonValue], str, datetime], "JsonValue | Deferred"]


def _text(params: dict[str, JsonValue], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RequestError("bad_params", f"parameter {key!r} must be a non-empty string")
    return value.strip()


class RequestHandler:
    """Serves requests on the hub's writer thread (the store's one user); enrolment from photos runs on ``worker``.

    ``people_changed`` is called after a person was added or renamed, ``person_erased`` after an erasure (the
    composition root has galleries, presence and Home Assistant follow).
    """

    def __init__(
        self,
        context: HubContext,
        *,
        board: PresenceBoard,
        galleries: GalleryPublisher,
        alerting: Alerting,
        people_changed: Callable[[], None],
        person_erased: Callable[[str, datetime], None],
        worker: EnrolmentWorker,
        assess_photos: AssessPhotos | None = None,
    ) -> None:
        self.context = context
        table = context.config.supervisors
        self.supervisors = Supervisors(
            {name: entry.role for name, entry in table.items()} if table is not None else None
        )
        self.store = context.store
        self.board = board
        self.galleries = galleries
        self.alerting = alerting
        self.people_changed = people_changed
        self.person_erased = person_erased
        self.assess_photos = assess_photos
        self.worker = worker
        self._silent_after_min = AlertRules.from_dict(context.config.alerts).device_silent.after_min
        self.methods: dict[str, Method] = {
            "people.list": self.people_list,
            "people.add": self.people_add,
            "people.rename": self.people_rename,
            "people.remove": self.people_remove,
            "people.enrol_photos": self.people_enrol_photos,
            "people.enrol_at_device": self.people_enrol_at_device,
            "presence.get": self.presence_get,
            "attendance.day": self.attendance_day,
            "events.recent": self.events_recent,
            "devices.list": self.devices_list,
            "devices.retire": self.devices_retire,
            "devices.rename": self.devices_rename,
            "devices.set_role": self.devices_set_role,
            "snapshot.get": self.snapshot_get,
            "alerts.list": self.alerts_list,
            "schedule.get": self.schedule_get,
            "site.info": self.site_info,
            "agents.list": self.agents_list,
            "agents.activity": self.agents_activity,
            "agents.files": self.agents_files,
            "agents.command": self.agents_command,
            "schedule.set_mode": self.schedule_set_mode,
            "alerts.acknowledge": self.alerts_acknowledge,
            "alerts.resolve": self.alerts_resolve,
        }

    def handle(self, request: wire.Request, name: str, now: datetime) -> None:
        """Serve one request of supervisor ``name`` (from the request topic); reply to their own reply topic only.

        Long ones reply when done. A ``reply_to`` that is not that supervisor's own gets no reply at all.
        """
        bad_reply_to = self._foreign_reply_to(request.reply_to, name)
        if bad_reply_to is not None:
            log.warning(
                "refused %s from supervisor %r: reply_to %r %s; no reply sent",
                request.method,
                name,
                request.reply_to,
                bad_reply_to,
            )
            details: dict[str, object] = {"method": request.method, "reply_to": request.reply_to[:512]}
            self.store.audit(name, "request.refused", None, {**details, "reason": f"reply_to {bad_reply_to}"}, now)
            return
        deferred: list[Deferred] = []

        def answer() -> JsonValue:
            method = self.methods.get(request.method)
            if method is None:
                raise RequestError("unknown_method", f"no method {request.method!r}; known: {', '.join(self.methods)}")
            refusal = self.supervisors.refusal(name, request.method)
            if refusal is not None:
                log.warning("refused %s from supervisor %r: %s", request.method, name, refusal)
                self.store.audit(name, "request.refused", None, {"method": request.method, "reason": refusal}, now)
                raise RequestError("forbidden", refusal)
            result = method(dict(request.params), name, now)
            if isinstance(result, Deferred):
                deferred.append(result)
                return None
            return result

        reply = self._reply(request, answer)
        if deferred:
            work = deferred[0].work
            if self.worker.submit(lambda: self._send(self._reply(request, work), request)):
                return  # the enrolment thread replies when done
            busy = f"{self.worker.max_waiting} enrolments are waiting already; try again in a minute"
            reply = wire.Reply(
                request_id=request.request_id, ok=False, error=wire.ReplyError(code="busy", message=busy)
            )
        self._send(reply, request)

    def _foreign_reply_to(self, reply_to: str, name: str) -> str | None:
        """Why ``reply_to`` is not supervisor ``name``'s own reply topic on this site, or None when it is."""
        try:
            ref = wire.parse_topic(reply_to)
        except wire.WireError:
            return "is not a rollcall topic"
        topics = self.context.topics
        if (ref.prefix, ref.site) != (topics.prefix, topics.site):
            return "is not on this site"
        if ref.role != "supervisor" or ref.leaf != "reply":
            return "is not a supervisor reply topic"
        if ref.entity != name:
            return f"is supervisor {ref.entity!r}'s reply topic"
        return None

    @staticmethod
    def _reply(request: wire.Request, answer: Callable[[], JsonValue]) -> wire.Reply:
        try:
            return wire.Reply(request_id=request.request_id, ok=True, result=answer())
        except RequestError as exc:
            error = wire.ReplyError(code=exc.code, message=str(exc))
        except NotFound as exc:
            error = wire.ReplyError(code="not_found", message=str(exc))
        except (StoreError, ValueError) as exc:
            error = wire.ReplyError(code="refused", message=str(exc)[:2000])
        return wire.Reply(request_id=request.request_id, ok=False, error=error)

    def _send(self, reply: wire.Reply, request: wire.Request) -> None:
        try:
            self.context.publish(request.reply_to, reply, qos=1)
        except Exception:
            log.exception("could not publish the reply to %s", request.reply_to)

    # --- people ------------------------------------------------------------------------------------------------------

    def people_list(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        counts = self.store.template_counts(self.context.model_id)
        return [
            {"person_id": p.id, "name": p.name, "templates": counts.get(p.id, 0), "created_at": iso_utc(p.created_at)}
            for p in self.store.list_people()
        ]

    def people_add(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        person_id = self.store.add_person(_text(params, "name"), now)
        self.store.audit(actor, "person.add", person_id, {"name": _text(params, "name")}, now)
        self.people_changed()
        self.board.publish(now)
        return {"person_id": person_id}

    def people_rename(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        person_id = _text(params, "person_id")
        self.store.rename_person(person_id, _text(params, "name"), now)
        self.store.audit(actor, "person.rename", person_id, {"name": _text(params, "name")}, now)
        self.people_changed()
        return {"person_id": person_id}

    def people_remove(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        person_id = _text(params, "person_id")
        before = self.store.get_person(person_id)
        if before is None:
            raise NotFound(f"no person {person_id!r}")
        # The alert book first: the erasure's compaction then also clears the pages of the book that named them.
        alerts = self.alerting.forget_person(person_id, before.name, now)
        report = self.store.erase_person(person_id, now, actor=actor)
        self.person_erased(person_id, now)
        self.alerting.refresh_texts(now)
        return {
            "person_id": person_id,
            "templates": report.templates,
            "snapshots": report.snapshots,
            "events": report.events,
            "alerts": alerts,
            "backups": report.backups,
        }

    def people_enrol_photos(self, params: dict[str, JsonValue], actor: str, now: datetime) -> Deferred:
        person_id = _text(params, "person_id")
        if self.store.get_person(person_id) is None:
            raise RequestError("not_found", f"no person {person_id}")
        paths = params.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise RequestError("bad_params", "parameter 'paths' must be a list of photo files or folders on the hub")
        assess = self.assess_photos
        if assess is None:
            raise RequestError("unavailable", "this hub has no face models configured for enrolment")
        root = self.context.config.hub.import_dir
        try:
            confined = confine_to(root, [str(p) for p in paths])
        except OutsideImportDir as exc:
            raise RequestError("forbidden" if root is not None else "unavailable", str(exc)) from None
        assert root is not None
        names = [str(p) for p in paths]

        def work() -> JsonValue:  # on the enrolment thread: decode and embed without the store lock
            photos = confined_photo_paths(root, confined)
            if not photos:
                raise RequestError("bad_params", "no photos found in " + ", ".join(names))
            assessed = assess([str(p) for p in photos])
            context = self.context
            with context.store_lock:
                person = self.store.get_person(person_id)
                if person is None or person.erased_at is not None:
                    raise RequestError("not_found", f"person {person_id} was removed while their photos were enrolled")
                at = context.clock()
                for photo in assessed:
                    if photo.embedding is not None:
                        source = f"photo:{Path(photo.photo).name}"
                        self.store.add_template(person_id, context.model_id, photo.embedding, photo.quality, source, at)
                self.store.audit(actor, "person.enrol_photos", person_id, {"photos": len(names)}, at)
                self.galleries.mark_dirty()
            results: list[JsonValue] = [{"photo": p.photo, "ok": p.ok, "reason": p.reason} for p in assessed]
            return {"person_id": person_id, "enrolled": sum(1 for p in assessed if p.ok), "photos": results}

        return Deferred(work)

    def people_enrol_at_device(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        person_id = _text(params, "person_id")
        device = _text(params, "device")
        if self.store.get_person(person_id) is None:
            raise RequestError("not_found", f"no person {person_id}")
        if self.store.get_device(device) is None:
            raise RequestError("not_found", f"no device {device}")
        count = params.get("count", 5)
        if not isinstance(count, int) or not 1 <= count <= 50:
            raise RequestError("bad_params", "parameter 'count' must be an integer from 1 to 50")
        command = wire.DeviceCommand(
            command_id=str(ULID()), at=now, action="enrol_capture", person_id=person_id, count=count, issued_by=actor
        )
        self.context.publish(self.context.topics.device_command(device), command, qos=1)
        self.store.audit(actor, "person.enrol_at_device", person_id, {"device": device, "count": count}, now)
        return {"command_id": command.command_id, "device": device, "count": count}

    # --- state -------------------------------------------------------------------------------------------------------

    def presence_get(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        payload = self.board.payload(now)
        return [entry.model_dump(mode="json") for entry in payload.people]

    def attendance_day(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        try:
            day = date.fromisoformat(_text(params, "date"))
        except ValueError:
            raise RequestError("bad_params", "parameter 'date' must be YYYY-MM-DD") from None
        self.board.settle_attendance(now)  # the days of events still waiting for their recompute, up to date first
        names = {p.id: p.name for p in self.store.list_people()}
        return [
            {
                "person_id": row.person_id,
                "name": names.get(row.person_id),
                "first_in": iso_utc(row.first_in),
                "last_out": iso_utc(row.last_out),
                "hours": round(row.present_s / 3600, 2),
                "status": row.status,
                "final": row.final,
                "first_in_event": row.first_in_event,
                "last_out_event": row.last_out_event,
            }
            for row in self.store.attendance(day)
        ]

    def events_recent(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        limit = params.get("limit", 50)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise RequestError("bad_params", "parameter 'limit' must be an integer from 1 to 1000")
        return [
            {key: row[key] for key in ("event_id", "device", "seq", "at", "type", "person_id", "score", "has_snapshot")}
            for row in self.store.recent_events(limit)
        ]

    def devices_list(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        return [
            {
                "device": d.id,
                "name": d.name,
                "role": d.role,
                "status": d.status,
                "last_seen": iso_utc(d.last_seen),
                "gallery_version": d.gallery_version,
                "gallery_sent_version": d.gallery_sent_version,
                "model_pack": d.model_pack,
                "delivered_through": iso_utc(d.delivered),
                "health": d.health,
                "retired_at": iso_utc(d.retired_at),
                "silent": self._silent(d.last_seen, d.retired_at, now),
            }
            for d in self.store.list_devices()
        ]

    def _silent(self, last_seen: datetime | None, retired_at: datetime | None, now: datetime) -> bool:
        """Not heard from for longer than ``hub.device_silent_after_min`` (a retired device is never silent)."""
        limit = timedelta(minutes=self._silent_after_min)
        return retired_at is None and (last_seen is None or now - last_seen > limit)

    def _device(self, params: dict[str, JsonValue]) -> str:
        device = _text(params, "device")
        if self.store.get_device(device) is None:
            raise RequestError("not_found", f"no device {device!r} (see devices.list)")
        return device

    def devices_retire(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        """Take a device out of service (``retired: false`` puts it back): it holds no attendance day open."""
        device = self._device(params)
        retired = params.get("retired", True)
        if not isinstance(retired, bool):
            raise RequestError("bad_params", "parameter 'retired' must be true or false")
        self.store.upsert_device(device, retired_at=now if retired else None)
        self.store.audit(actor, "device.retire" if retired else "device.reinstate", None, {"device": device}, now)
        self.board.sign_off(now)  # days it alone held open are final now
        return {"device": device, "retired_at": iso_utc(now) if retired else None}

    def devices_rename(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        """Give a device a display name (its id, in topics and certificates, stays)."""
        device = self._device(params)
        name = _text(params, "name")
        self.store.upsert_device(device, name=name)
        self.store.audit(actor, "device.rename", None, {"device": device, "name": name}, now)
        return {"device": device, "name": name}

    def devices_set_role(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        """Change which way a device's camera looks (entrance, exit or both); later days are judged by it."""
        device = self._device(params)
        role = _text(params, "role")
        if role not in ("entrance", "exit", "both"):
            raise RequestError("bad_params", f"parameter 'role' must be entrance, exit or both, got {role!r}")
        if any(camera.device == device for camera in self.context.config.cameras):
            raise RequestError(
                "bad_params",
                f"device {device!r} is listed under [[cameras]] in the hub config, which sets its role at every "
                "start: change role there and restart the hub",
            )
        self.store.upsert_device(device, role=role)
        self.store.audit(actor, "device.set_role", None, {"device": device, "role": role}, now)
        return {"device": device, "role": role}

    def snapshot_get(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        event_id = _text(params, "event_id")
        data = self.store.load_snapshot(event_id)
        if data is None:
            raise RequestError("not_found", f"no snapshot for event {event_id}")
        return {"event_id": event_id, "content_type": "image/jpeg", "data_b64": base64.b64encode(data).decode()}

    # --- alerts ------------------------------------------------------------------------------------------------------

    def alerts_list(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        state = params.get("state")
        if state is not None and state not in ("open", "acknowledged", "resolved"):
            raise RequestError("bad_params", "parameter 'state' must be open, acknowledged or resolved")
        limit = params.get("limit", 200)
        if not isinstance(limit, int) or not 1 <= limit <= 5000:
            raise RequestError("bad_params", "parameter 'limit' must be an integer from 1 to 5000")
        records = self.alerting.list(state if isinstance(state, str) else None)[:limit]
        return [to_wire(record).model_dump(mode="json") for record in records]

    def _alert_change(self, params: dict[str, JsonValue], actor: str, now: datetime, action: str) -> JsonValue:
        alert_id = _text(params, "alert_id")
        try:
            if action == "acknowledge":
                record = self.alerting.acknowledge(alert_id, actor, now)
            else:
                record = self.alerting.resolve(alert_id, actor, now)
        except KeyError:
            raise RequestError("not_found", f"no alert {alert_id}") from None
        self.store.audit(actor, f"alert.{action}", alert_id, {"rule": record.rule}, now)
        return to_wire(record).model_dump(mode="json")

    def alerts_acknowledge(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        return self._alert_change(params, actor, now, "acknowledge")

    def alerts_resolve(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        return self._alert_change(params, actor, now, "resolve")

    # --- schedule ----------------------------------------------------------------------------------------------------

    def schedule_get(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        ruleset = self.alerting.latest_rules()
        return {
            "version": ruleset.version,
            "valid_from": iso_utc(ruleset.valid_from),
            "mode": ruleset.schedule.mode,
            "paused_until": iso_utc(ruleset.schedule.paused_until),
            "work_time_now": is_work_time(ruleset.schedule, now),
        }

    def site_info(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        """What a console needs to show times as the hub judges them: site, time zone, day start, silence limit."""
        config = self.context.config
        day_start = config.attendance.day_starts_at
        day = local_day(now, self.board.attendance_rules)
        return {
            "site": config.site.id,
            "timezone": config.site.timezone,
            "day_starts_at": day_start.strftime("%H:%M"),
            "attendance_day": day.isoformat(),
            "device_silent_after_min": self._silent_after_min,
        }

    def schedule_set_mode(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        mode = _text(params, "mode")
        paused = params.get("paused_until")
        until = None
        if paused is not None:
            if not isinstance(paused, str):
                raise RequestError("bad_params", "parameter 'paused_until' must be an ISO 8601 time with an offset")
            try:
                until = datetime.fromisoformat(paused.replace("Z", "+00:00"))
            except ValueError:
                raise RequestError(
                    "bad_params", "parameter 'paused_until' must be an ISO 8601 time with an offset"
                ) from None
            if until.tzinfo is None:
                raise RequestError("bad_params", "parameter 'paused_until' needs a UTC offset")
        try:
            self.alerting.set_mode(mode, until, actor, now)
        except ValueError as exc:
            raise RequestError("bad_params", str(exc)) from None
        return self.schedule_get({}, actor, now)

    # --- workstation agents --------------------------------------------------------------------------------------

    def agents_list(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        return [
            {
                key: agent.get(key)
                for key in ("id", "status", "last_seen", "user", "window_title", "window_app", "state", "state_since")
            }
            for agent in self.store.list_agents()
        ]

    def _agent_and_limit(self, params: dict[str, JsonValue], default: int) -> tuple[str, int]:
        agent = _text(params, "agent")
        limit = params.get("limit", default)
        if not isinstance(limit, int) or not 1 <= limit <= 5000:
            raise RequestError("bad_params", "parameter 'limit' must be an integer from 1 to 5000")
        return agent, limit

    def agents_activity(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        agent, limit = self._agent_and_limit(params, 100)
        return cast(JsonValue, self.store.agent_activity(agent, limit))

    def agents_files(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        agent, limit = self._agent_and_limit(params, 200)
        return cast(JsonValue, self.store.file_changes(agent, limit))

    def agents_command(self, params: dict[str, JsonValue], actor: str, now: datetime) -> JsonValue:
        """Send a workstation agent a command (message, lock, unlock, screenshot) in the supervisor's name.

        The broker lets only the hub write agents' command topics.
        """
        agent = _text(params, "agent")
        if not any(known.get("id") == agent for known in self.store.list_agents()):
            raise RequestError("not_found", f"no workstation agent {agent}")
        action = _text(params, "action")
        text = params.get("text")
        unlock_after_s = params.get("unlock_after_s")
        try:
            command = wire.AgentCommand(
                command_id=str(ULID()),
                at=now,
                action=action,  # type: ignore[arg-type]  # validated by the model
                text=text if isinstance(text, str) else None,
                unlock_after_s=unlock_after_s if isinstance(unlock_after_s, int) else None,
                issued_by=actor,
            )
        except ValueError as exc:
            raise RequestError("bad_params", f"not a valid agent command: {exc}"[:2000]) from None
        self.context.publish(self.context.topics.agent_command(agent), command, qos=1)
        self.store.audit(actor, "agent.command", agent, {"action": command.action}, now)
        return {"command_id": command.command_id, "agent": agent, "action": command.action}
