"""The ``rollcall hub``, ``rollcall people`` and ``rollcall report`` commands."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path(os.environ.get("ROLLCALL_HUB_CONFIG", "/etc/rollcall/hub.toml"))


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"hub TOML config (default {DEFAULT_CONFIG}, or $ROLLCALL_HUB_CONFIG)",
    )


def add_hub_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``rollcall hub run``, ``rollcall hub rotate-key``, ``rollcall hub backup`` and ``rollcall hub purge``."""
    run = commands.add_parser("run", help="run the hub: ingest, presence, attendance, galleries, request API")
    _config_argument(run)
    run.set_defaults(handler=run_hub)
    rotate = commands.add_parser(
        "rotate-key", help="add a new encryption key and re-encrypt templates and snapshots (stop the hub first)"
    )
    _config_argument(rotate)
    rotate.add_argument(
        "--retire-old-keys", action="store_true", help="drop the old keys once everything is re-encrypted"
    )
    rotate.set_defaults(handler=rotate_key)
    backup = commands.add_parser(
        "backup",
        help="copy the hub's database to DEST with SQLite's online backup (the hub may keep running), checked",
    )
    backup.add_argument("dest", type=Path, metavar="DEST", help="the backup file to write (not an existing one)")
    backup.add_argument("--force", action="store_true", help="replace DEST if it exists")
    backup.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _config_argument(backup)
    backup.set_defaults(handler=backup_hub)
    purge = commands.add_parser(
        "purge", help="delete what is older than the [retention] limits now (the hub does it daily at run_at)"
    )
    purge.add_argument("--dry-run", action="store_true", help="only list what would go, per kind, with the cut-offs")
    _config_argument(purge)
    purge.set_defaults(handler=purge_hub)


def add_people_commands(roles: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``rollcall people add|list|remove`` (through the running hub's API)."""
    people = roles.add_parser("people", help="enrol, list and remove people (asks the running hub)")
    commands = people.add_subparsers(dest="people_command", metavar="COMMAND", required=True)
    add = commands.add_parser("add", help="add a person and enrol them from photos (files or folders on the hub)")
    add.add_argument("name", help="the person's name as it should be shown")
    add.add_argument("photos", nargs="+", help="photo files or folders")
    _config_argument(add)
    add.set_defaults(handler=people_add)
    listing = commands.add_parser("list", help="everyone the hub knows, with their number of templates")
    _config_argument(listing)
    listing.set_defaults(handler=people_list)
    remove = commands.add_parser("remove", help="erase a person: templates, photos, identity in events, galleries")
    remove.add_argument("person", help="person id (p-...) or exact name")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _config_argument(remove)
    remove.set_defaults(handler=people_remove)


def add_report_commands(roles: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``rollcall report attendance|events|person`` (read-only, straight from the database)."""
    report = roles.add_parser("report", help="attendance, events and per-person reports from the hub's database")
    commands = report.add_subparsers(dest="report_command", metavar="COMMAND", required=True)
    attendance = commands.add_parser("attendance", help="first in, last out and hours per person per day")
    attendance.add_argument(
        "--from",
        dest="start",
        type=date.fromisoformat,
        help="first day YYYY-MM-DD (default: the current attendance day)",
    )
    attendance.add_argument("--to", dest="end", type=date.fromisoformat, help="last day YYYY-MM-DD (default --from)")
    attendance.add_argument("--format", choices=["csv", "json", "table"], default="table")
    _config_argument(attendance)
    attendance.set_defaults(handler=report_attendance)
    events = commands.add_parser("events", help="the most recent events")
    events.add_argument("--last", type=int, default=20, help="how many (default 20)")
    events.add_argument("--format", choices=["csv", "json", "table"], default="table")
    _config_argument(events)
    events.set_defaults(handler=report_events)
    person = commands.add_parser("person", help="one person: presence, recent days and events")
    person.add_argument("person", help="person id (p-...) or exact name")
    _config_argument(person)
    person.set_defaults(handler=report_person)


def add_device_commands(roles: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``rollcall devices list|retire|rename|set-role`` (through the running hub's API; changes need admin)."""
    devices = roles.add_parser("devices", help="list, retire, rename door devices or change their role (asks the hub)")
    commands = devices.add_subparsers(dest="devices_command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="every door device: role, status, last seen, silent, retired")
    listing.set_defaults(handler=devices_command, method="devices.list")
    retire = commands.add_parser("retire", help="take a device out of service: it no longer holds days open")
    retire.add_argument("device", help="device id")
    retire.add_argument("--undo", action="store_true", help="put a retired device back into service")
    retire.set_defaults(handler=devices_command, method="devices.retire")
    rename = commands.add_parser("rename", help="give a device a display name (its id stays)")
    rename.add_argument("device", help="device id")
    rename.add_argument("name", help="the new display name")
    rename.set_defaults(handler=devices_command, method="devices.rename")
    role = commands.add_parser("set-role", help="change which way a device's camera looks")
    role.add_argument("device", help="device id")
    role.add_argument("role", choices=["entrance", "exit", "both"])
    role.set_defaults(handler=devices_command, method="devices.set_role")
    for parser in (listing, retire, rename, role):
        _config_argument(parser)


def devices_command(args: argparse.Namespace) -> int:
    """``rollcall devices ...``: one request to the running hub, its answer printed."""
    from edge.protocol.hub_client import HubRequestFailed, HubUnavailable

    config = _load(args.config)
    params: dict[str, Any] = {}
    if args.method != "devices.list":
        params["device"] = args.device
    if args.method == "devices.retire":
        params["retired"] = not args.undo
    elif args.method == "devices.rename":
        params["name"] = args.name
    elif args.method == "devices.set_role":
        params["role"] = args.role
    try:
        with _client(config) as client:
            result = client.call(args.method, params)
    except ValueError as exc:
        return _fail(str(exc))
    except (HubUnavailable, HubRequestFailed) as exc:
        return _fail(str(exc), 1)
    if args.method != "devices.list":
        print(json.dumps(result))
        return 0
    for d in result:
        flags = " ".join(f for f in ("retired" if d["retired_at"] else "", "SILENT" if d["silent"] else "") if f)
        print(f"{d['device']:<24} {d['role']:<8} {d['status']:<8} last seen {d['last_seen'] or '-'}  {flags}")
    return 0


def _fail(message: str, code: int = 2) -> int:
    print(f"rollcall: {message}", file=sys.stderr)
    return code


def _load(path: Path) -> Any:
    from edge.protocol.config import ConfigError, config_warnings, load_config
    from hub.config import HubConfig

    try:
        config = load_config(HubConfig, path, "hub")
    except ConfigError as exc:
        lines = "\n".join(f"  {p}" for p in exc.problems)
        raise SystemExit(_fail(f"{path}: the hub config has problems:\n{lines}")) from None
    for warning in config_warnings(config):
        print(f"rollcall: {path}: warning: {warning}", file=sys.stderr, flush=True)
    return config


def _model(config: Any) -> tuple[str, int]:
    from edge.recognition.packs import load_manifest

    manifest = load_manifest()
    pack = manifest.pack(config.hub.model_pack)
    recogniser = manifest.recogniser_of(pack.name)
    return f"{pack.name}:{recogniser.name}", int(recogniser.embedding_size or 128)


def run_hub(args: argparse.Namespace) -> int:
    """``rollcall hub run``."""
    import logging
    import signal

    from edge.recognition.engine import build_engine
    from edge.recognition.packs import ModelError
    from hub.enrol import Enroller, PictureLimits
    from hub.service import HubService
    from hub.store import HubStore, StoreError

    config = _load(args.config)
    try:
        store = HubStore.from_settings(config.hub)
    except StoreError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a data folder or key file that cannot be made or written
        return _fail(f"cannot open the hub's data at {exc.filename or config.hub.database}: {exc.strerror or exc}")
    model_id, size = _model(config)
    enroller = None
    try:
        engine = build_engine(config.hub.model_pack, config.hub.models_dir)
        limits = PictureLimits(config.enrolment.max_photo_megapixels, config.enrolment.max_photo_mb)
        enroller = Enroller(engine, model_id, limits)
    except ModelError as exc:
        logging.getLogger("rollcall.hub").warning("enrolment from photos is off: %s", exc)
    hub = HubService(
        config,
        store,
        model_id=model_id,
        embedding_size=size,
        assess_photos=enroller.assess_photos if enroller else None,
        enrol_capture=enroller.embed_capture if enroller else None,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: hub.stop_event.set())
    print(f"rollcall hub: {config.summary()}", file=sys.stderr, flush=True)
    hub.start()
    hub.stop_event.wait()
    hub.stop()
    store.close()
    return 0


def rotate_key(args: argparse.Namespace) -> int:
    """``rollcall hub rotate-key``."""
    from hub.store import HubStore, StoreError

    config = _load(args.config)
    try:
        with HubStore.from_settings(config.hub) as store:
            rows, files = store.rotate_key(retire_old_keys=args.retire_old_keys)
    except StoreError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot open the hub's data at {config.hub.database}: {exc.strerror or exc}")
    print(f"re-encrypted {rows} templates and {files} files with the new key in {config.hub.key_file}")
    return 0


def backup_hub(args: argparse.Namespace) -> int:
    """``rollcall hub backup DEST``."""
    from hub.backup import BackupError, backup_database

    config = _load(args.config)
    shown = [-1]

    def progress(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if not args.quiet and percent != shown[0]:
            shown[0] = percent
            print(f"\rbackup: {done} of {total} pages ({percent}%)", end="", file=sys.stderr, flush=True)

    try:
        report = backup_database(Path(config.hub.database), args.dest, force=args.force, progress=progress)
    except BackupError as exc:
        if shown[0] >= 0:
            print(file=sys.stderr)
        return _fail(str(exc), 1)
    if shown[0] >= 0:
        print(file=sys.stderr)
    register_backup(config.hub, report.path)
    print(f"backed up {config.hub.database} to {report.path}: {report.bytes} bytes, quick_check ok")
    return 0


def purge_hub(args: argparse.Namespace) -> int:
    """``rollcall hub purge [--dry-run]``: the retention purge by hand, cut-offs shown in site-local time."""
    from zoneinfo import ZoneInfo

    from edge.protocol import wire
    from hub import retention
    from hub.store import HubStore, StoreError

    config = _load(args.config)
    zone = ZoneInfo(config.site.timezone)
    now = wire.now_utc()
    cut = retention.Cutoffs.at(now, config.retention)
    try:
        with HubStore.from_settings(config.hub, quick_check=False) as store:
            counts = retention.purge(store, cut, dry_run=True)
            for kind in retention.KINDS:
                before = cut.by_kind[kind].astimezone(zone).isoformat(sep=" ", timespec="minutes")
                print(f"{kind:<18} {counts[kind]:>8}  older than {before}")
            if args.dry_run:
                print(f"dry run: {sum(counts.values())} rows would go (nothing deleted)")
                return 0
            print(f"purging {sum(counts.values())} rows ...", file=sys.stderr, flush=True)
            done = retention.purge(store, cut)
            store.set_meta("retention_last_run", now.isoformat())
    except StoreError as exc:
        return _fail(str(exc))
    print(f"purged {sum(done.values())} rows: " + ", ".join(f"{n} {kind}" for kind, n in done.items()))
    return 0


def register_backup(settings: Any, backup: Path) -> None:
    """List a new backup in ``backups.list`` (erasures reach it) and erase from it anyone erased meanwhile."""
    from edge.protocol import wire
    from hub.store.erasure import BackupRegister, ErasureLedger
    from hub.store.hub_store import erase_from_backup

    BackupRegister(settings.data_dir).add(backup)
    erase_from_backup(
        backup,
        settings.data_dir,
        settings.key_file,
        ErasureLedger(settings.data_dir).person_ids(),
        wire.now_utc(),
        actor="erasure-ledger",
    )


def _client(config: Any) -> Any:
    from edge.protocol.hub_client import HubClient

    # The hub's API serves supervisors: the broker user name is the supervisor's name (zero-config: "cli", an admin
    # while the hub has no [supervisors] table). The hub's own identity may not ask; use a supervisor's config.
    name = config.mqtt.username or "cli"
    try:
        return HubClient(config.mqtt, _topics(config), name)
    except ValueError:
        raise ValueError(
            f"mqtt.username {name!r} cannot ask the hub: the people commands ask as a supervisor; give them a "
            "config whose [mqtt] username (and TLS certificate) is a supervisor's, listed under [supervisors.<name>]"
        ) from None


def _topics(config: Any) -> Any:
    from edge.protocol import wire

    return wire.Topics(config.site.id, config.site.topic_prefix)


def _resolve_person(client: Any, person: str) -> str:
    people = client.call("people.list")
    matches = [p["person_id"] for p in people if person in (p["person_id"], p["name"])]
    if len(matches) != 1:
        raise ValueError(
            f"{'no' if not matches else 'several'} people match {person!r}; use the id (rollcall people list)"
        )
    return str(matches[0])


def people_add(args: argparse.Namespace) -> int:
    """``rollcall people add NAME PHOTO...``."""
    from edge.protocol.hub_client import HubRequestFailed, HubUnavailable

    config = _load(args.config)
    photos = [str(Path(p).expanduser().resolve()) for p in args.photos]
    missing = [p for p in photos if not Path(p).exists()]
    if missing:
        return _fail(f"no such photo or folder: {', '.join(missing)}")
    try:
        with _client(config) as client:
            person_id = client.call("people.add", {"name": args.name})["person_id"]
            result = client.call("people.enrol_photos", {"person_id": person_id, "paths": photos}, timeout=120)
    except (HubUnavailable, HubRequestFailed, ValueError) as exc:
        return _fail(str(exc), 1)
    for photo in result["photos"]:
        mark = "ok " if photo["ok"] else "NO "
        print(f"  {mark} {photo['photo']}" + ("" if photo["ok"] else f": {photo['reason']}"))
    print(f"{args.name}: {person_id}, {result['enrolled']} of {len(result['photos'])} photos enrolled")
    return 0 if result["enrolled"] else 1


def people_list(args: argparse.Namespace) -> int:
    """``rollcall people list``."""
    from edge.protocol.hub_client import HubRequestFailed, HubUnavailable

    config = _load(args.config)
    try:
        with _client(config) as client:
            people = client.call("people.list")
    except (HubUnavailable, HubRequestFailed, ValueError) as exc:
        return _fail(str(exc), 1)
    for person in people:
        print(f"{person['person_id']:<32} {person['templates']:>3} templates  {person['name']}")
    print(f"{len(people)} people")
    return 0


def people_remove(args: argparse.Namespace) -> int:
    """``rollcall people remove PERSON``."""
    from edge.protocol.hub_client import HubRequestFailed, HubUnavailable

    config = _load(args.config)
    try:
        with _client(config) as client:
            person_id = _resolve_person(client, args.person)
            if not args.yes:
                if not sys.stdin.isatty():
                    return _fail("refusing to erase without --yes (no terminal to ask on)")
                if input(f"Erase {args.person} ({person_id}) everywhere? Type yes: ").strip() != "yes":
                    return _fail("not erased", 1)
            result = client.call("people.remove", {"person_id": person_id}, timeout=60)
    except ValueError as exc:
        return _fail(str(exc))
    except (HubUnavailable, HubRequestFailed) as exc:
        return _fail(str(exc), 1)
    print(
        f"erased {person_id}: {result['templates']} templates, {result['snapshots']} snapshots, "
        f"{result['events']} events de-identified; galleries republished"
    )
    return 0


def _with_database(config: Any, work: Callable[[sqlite3.Connection], int]) -> int:
    """Run a report on a read-only connection; a damaged or foreign file is a clear message and exit 1."""
    from hub.store.reports import open_read_only
    from hub.store.schema import APPLICATION_ID, damaged_advice

    path = Path(config.hub.database)
    if not path.exists():
        return _fail(f"no hub database at {path} (check hub.database in the hub config)")
    try:
        connection = open_read_only(path)
        try:
            if connection.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                return _fail(f"{path} is not a rollcall hub database (it is empty or another program's file)", 1)
            # A page the report's query never reads may be the damaged one: check the whole file, as the hub does.
            problems = [str(row[0]) for row in connection.execute("PRAGMA quick_check(5)").fetchall()]
            if problems != ["ok"]:
                found = "; ".join(problems)[:300]
                return _fail(f"database {path} is corrupt (quick check: {found}): {damaged_advice(path)}", 1)
            return work(connection)
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        return _fail(f"database {path} cannot be read, it is corrupt ({exc}): {damaged_advice(path)}", 1)


def _emit(rows: list[dict[str, Any]], fmt: str, columns: list[str]) -> int:
    """Print the rows in the format asked for; the exit status (0)."""
    if fmt == "json":
        print(json.dumps(rows, indent=2, default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([row.get(c) for c in columns] for row in rows)
    else:
        widths = {c: max([len(c), *(len(str(r.get(c) or "")) for r in rows)]) for c in columns}
        print("  ".join(c.ljust(widths[c]) for c in columns))
        for row in rows:
            print("  ".join(str(row.get(c) or "").ljust(widths[c]) for c in columns))
    return 0


def report_attendance(args: argparse.Namespace) -> int:
    """``rollcall report attendance``."""
    from datetime import datetime

    from edge.protocol import wire
    from hub.domain.attendance import AttendanceRules, local_day
    from hub.store.reports import attendance_rows

    config = _load(args.config)
    rules = AttendanceRules(config.site.timezone, day_starts_at=config.attendance.day_starts_at)
    start = args.start or local_day(wire.now_utc(), rules)  # the current attendance day, not the calendar date
    end = args.end or start
    if end < start:
        return _fail("--to is before --from")
    columns = ["day", "person_id", "name", "first_in", "last_out", "hours", "status", "final"]

    # Stored times are fixed-width UTC text, so every time within the same UTC minute (second, for JSON) reads the
    # same locally: a month of 10,000 people is 600,000 times but a few thousand distinct minutes.
    precision = 19 if args.format == "json" else 16
    seen: dict[str, str] = {}

    def local(value: str | None) -> str | None:
        """Site-local: ISO 8601 with the site's offset in JSON, ``YYYY-MM-DD HH:MM`` in tables and CSV."""
        if not value:
            return None
        key = value[:precision]
        text = seen.get(key)
        if text is None:
            at = datetime.fromisoformat(value).astimezone(rules.zone)
            if args.format == "json":
                text = at.isoformat(timespec="seconds")
            else:
                text = at.isoformat(sep=" ", timespec="minutes")[:16]  # YYYY-MM-DD HH:MM
            seen[key] = text
        return text

    def emit(db: sqlite3.Connection) -> int:
        rows = attendance_rows(db, start, end)
        for row in rows:
            row["first_in"], row["last_out"] = local(row["first_in"]), local(row["last_out"])
            row["final"] = bool(row["final"])
        return _emit(rows, args.format, columns)

    return _with_database(config, emit)


def report_events(args: argparse.Namespace) -> int:
    """``rollcall report events``."""
    from hub.store.reports import recent_event_rows

    config = _load(args.config)
    if not 1 <= args.last <= 100_000:
        return _fail("--last must be between 1 and 100000")
    columns = ["at", "device", "seq", "type", "person_id", "name", "score"]
    return _with_database(config, lambda db: _emit(recent_event_rows(db, args.last), args.format, columns))


def report_person(args: argparse.Namespace) -> int:
    """``rollcall report person``."""
    config = _load(args.config)
    return _with_database(config, lambda db: _person_report(db, args.person))


def _person_report(connection: sqlite3.Connection, person: str) -> int:
    from hub.store.reports import people_matching, person_days, person_presence

    found = people_matching(connection, person)
    if len(found) != 1:
        return _fail(f"{'no' if not found else 'several'} people match {person!r}")
    person_id, name = found[0]["id"], found[0]["name"]
    presence = person_presence(connection, person_id)
    print(f"{name} ({person_id})")
    print(f"  now: {dict(presence) if presence else 'never seen'}")
    for row in person_days(connection, person_id, date.today() - timedelta(days=14)):
        first_in, last_out = row["first_in"] or "-", row["last_out"] or "-"
        print(f"  {row['day']}: in {first_in}  out {last_out}  {row['hours']} h  {row['status']}")
    return 0
