"""Workstation agents: their status, merged activity and the change log of their watched folders."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from edge.protocol import wire
from hub.store.core import StoreCore, stored_time
from hub.store.schema import transaction


class AgentStore(StoreCore):
    """Workstation agents, their activity batches and file changes."""

    def insert_activity(self, activity: wire.Activity, received_at: datetime) -> bool:
        """Store one activity batch (and its file changes) once; False when it was stored before."""
        with transaction(self.db) as tx:
            cur = tx.execute(
                "INSERT INTO agent_activity (event_id, agent, seq, at, received_at, user, session, intervals, window) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
                (
                    activity.event_id,
                    activity.agent,
                    activity.seq,
                    stored_time(activity.at),
                    stored_time(received_at),
                    activity.user,
                    activity.session,
                    json.dumps([i.model_dump(mode="json") for i in activity.intervals]),
                    json.dumps(activity.window.model_dump(mode="json")) if activity.window else None,
                ),
            )
            if cur.rowcount != 1:
                return False
            for change in activity.files:
                tx.execute(
                    "INSERT INTO file_changes (event_id, agent, at, path, change, dest_path) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        activity.event_id,
                        activity.agent,
                        stored_time(change.at),
                        change.path,
                        change.change,
                        change.dest_path,
                    ),
                )
            latest = activity.intervals[-1] if activity.intervals else None
            fields: dict[str, object] = {"last_seen": stored_time(received_at)}
            if activity.user is not None:
                fields["user"] = activity.user
            if activity.window is not None:
                fields["window_title"] = activity.window.title
                fields["window_app"] = activity.window.app
            if latest is not None:
                fields["state"] = latest.state
                fields["state_since"] = stored_time(latest.start)
            self._upsert_agent(tx, activity.agent, fields)
        return True

    @staticmethod
    def _upsert_agent(tx: sqlite3.Connection, agent: str, fields: Mapping[str, object]) -> None:
        columns = sorted(fields)
        update = ", ".join(f"{c} = excluded.{c}" for c in columns)
        marks = ", ".join("?" * (len(columns) + 1))
        tx.execute(
            f"INSERT INTO agents (id{''.join(', ' + c for c in columns)}) VALUES ({marks}) "
            f"ON CONFLICT(id) DO UPDATE SET {update}",
            [agent, *[fields[c] for c in columns]],
        )

    def set_agent_status(self, agent: str, status: str, at: datetime, now: datetime) -> None:
        """An agent's retained status (online, offline, stopped)."""
        wire.check_id(agent, "agent id")
        with transaction(self.db) as tx:
            self._upsert_agent(
                tx, agent, {"status": status, "status_at": stored_time(at), "last_seen": stored_time(now)}
            )

    def list_agents(self) -> list[dict[str, Any]]:
        """Every workstation agent with its latest state."""
        cur = self.db.conn.execute("SELECT * FROM agents ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def agent_activity(self, agent: str, limit: int = 100) -> list[dict[str, Any]]:
        """An agent's newest activity batches (intervals and window decoded)."""
        cur = self.db.conn.execute(
            "SELECT event_id, seq, at, user, session, intervals, window FROM agent_activity WHERE agent = ? "
            "ORDER BY at DESC LIMIT ?",
            (agent, limit),
        )
        return [
            {
                "event_id": e,
                "seq": s,
                "at": a,
                "user": u,
                "session": se,
                "intervals": json.loads(i or "[]"),
                "window": json.loads(w) if w else None,
            }
            for e, s, a, u, se, i, w in cur.fetchall()
        ]

    def file_changes(self, agent: str, limit: int = 200) -> list[dict[str, Any]]:
        """An agent's change log, newest first."""
        cur = self.db.conn.execute(
            "SELECT at, path, change, dest_path FROM file_changes WHERE agent = ? ORDER BY at DESC, id DESC LIMIT ?",
            (agent, limit),
        )
        return [{"at": a, "path": p, "change": c, "dest_path": d} for a, p, c, d in cur.fetchall()]
