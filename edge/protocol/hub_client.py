"""A request/reply client for the hub's API over the broker (used by the CLI and the TUI)."""

from __future__ import annotations

import secrets
import threading
from typing import Any

from pydantic import JsonValue
from ulid import ULID

from edge.protocol import wire
from edge.protocol.config import MqttSettings
from edge.protocol.mqtt import MqttLink, Received


class HubUnavailable(RuntimeError):
    """The broker or the hub did not answer in time."""


class HubRequestFailed(RuntimeError):
    """The hub answered with an error."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def new_session() -> str:
    """A fresh session token: unique per run, usable as a topic level and after the ``:`` of a client id."""
    return secrets.token_hex(8)


class HubClient:
    """Connects once, then :meth:`call` sends a request and waits for its reply.

    It asks as supervisor ``name`` (on a provisioned site: the broker user name, the CN of the client certificate)
    on ``supervisor/<name>/request`` and hears back on its own ``supervisor/<name>/reply/<session>``. Its client id
    is ``<name>:<session>``, unique per session, so two sessions of one supervisor never knock each other off.
    """

    def __init__(self, settings: MqttSettings, topics: wire.Topics, name: str, session: str | None = None) -> None:
        self.topics = topics
        self.name = wire.check_id(name, "supervisor name")
        self.session = wire.check_id(session or new_session(), "session")
        self.client = name
        self.request_topic = topics.supervisor_request(name)
        self.reply_topic = topics.supervisor_reply(name, self.session)
        self.client_id = f"{name}:{self.session}"
        self._replies: dict[str, wire.Reply] = {}
        self._waiting: set[str] = set()  # a reply that arrives after its caller gave up is dropped, not kept
        self._cond = threading.Condition()
        self.link = MqttLink(settings, client_id=self.client_id, on_message=self._on_message, clean_session=True)
        self.link.subscribe(self.reply_topic, qos=1)

    def __enter__(self) -> HubClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 10.0) -> None:
        """Connect; raises :class:`HubUnavailable` when the broker cannot be reached."""
        self.link.start()
        if not self.link.wait_subscribed(timeout):
            self.link.stop()
            host, port = self.link.settings.host, self.link.settings.port
            raise HubUnavailable(
                f"cannot reach the broker at {host}:{port}; is it running? (check [mqtt] in the config)"
            )

    def close(self) -> None:
        """Disconnect."""
        self.link.stop()

    def _on_message(self, message: Received) -> None:
        try:
            _, reply = wire.decode(message.topic, message.payload)
        except wire.WireError:
            return
        if isinstance(reply, wire.Reply):
            with self._cond:
                if reply.request_id in self._waiting:
                    self._replies[reply.request_id] = reply
                    self._cond.notify_all()

    def call(self, method: str, params: dict[str, JsonValue] | None = None, timeout: float = 10.0) -> Any:
        """Send one request and return its result; raises on an error reply or no reply within ``timeout``."""
        request = wire.Request(
            request_id=str(ULID()),
            client=self.client,
            sent_at=wire.now_utc(),
            method=method,
            params=params or {},
            reply_to=self.reply_topic,
        )
        with self._cond:
            self._waiting.add(request.request_id)
        self.link.publish(self.request_topic, request, qos=1)
        with self._cond:
            answered = self._cond.wait_for(lambda: request.request_id in self._replies, timeout)
            self._waiting.discard(request.request_id)
            if not answered:
                raise HubUnavailable(
                    f"the hub did not answer {method} within {timeout:.0f} s; is `rollcall hub run` up?"
                )
            reply = self._replies.pop(request.request_id)
        if not reply.ok:
            assert reply.error is not None
            raise HubRequestFailed(reply.error.code, reply.error.message)
        return reply.result
