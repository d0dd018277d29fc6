"""Notifications: Telegram alerts and commands, signed webhooks, a retrying delivery queue, Home Assistant discovery.

Home Assistant MQTT discovery (:func:`ha_discovery_messages`, :func:`ha_state_messages`, :func:`ha_removal_messages`)
publishes on topics that are deliberately **outside** the rollcall wire contract (``edge/protocol/wire.py``): the config
topics live under Home Assistant's discovery prefix (``homeassistant/...``) and the state topics under
``<prefix>/<site>/ha/...``, with plain-string or free-form JSON payloads in the shapes Home Assistant expects, without a
version field. ``wire.parse_topic`` does not accept them, and nothing in rollcall subscribes to them; they exist only
for Home Assistant. See docs/notifications.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, NamedTuple, Protocol, TypeAlias

from edge.protocol import wire

log = logging.getLogger("rollcall.hub.notify")

Severity: TypeAlias = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

TELEGRAM_API = "https://api.telegram.org"
TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024
SIGNATURE_HEADER = "X-Rollcall-Signature"
DELIVERY_HEADER = "X-Rollcall-Delivery"


class NotifyError(Exception):
    """A notification could not be delivered; the message says why (HTTP status, API description, network)."""


# --- notifications and filters -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    """Something to tell people: an alert as it stands now, or a text, each optionally with a photo (JPEG bytes).

    ``rule`` and ``severity`` drive the notifiers' filters; for an alert they default to the alert's own.
    ``id`` stays the same across retries (the webhook sends it as ``X-Rollcall-Delivery``, so receivers can drop
    repeats; Telegram uses it not to send a message twice to a chat that already has it).
    """

    kind: Literal["alert", "text"]
    alert: wire.Alert | None = None
    text: str = ""
    photo: bytes | None = None
    rule: str | None = None
    severity: Severity | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if self.kind == "alert":
            if self.alert is None:
                raise ValueError("an alert notification needs its alert")
            if self.rule is None:
                object.__setattr__(self, "rule", self.alert.rule)
            if self.severity is None:
                object.__setattr__(self, "severity", self.alert.severity)
        elif self.kind == "text":
            if self.alert is not None:
                raise ValueError("a text notification carries no alert")
            if not self.text and self.photo is None:
                raise ValueError("a text notification needs a text or a photo")
        else:
            raise ValueError(f"unknown notification kind {self.kind!r}; use 'alert' or 'text'")
        if self.severity is not None and self.severity not in _SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}; use one of {', '.join(SEVERITIES)}")

    @classmethod
    def for_alert(cls, alert: wire.Alert, photo: bytes | None = None) -> Notification:
        """A notification for an alert (its rule and severity are the alert's)."""
        return cls(kind="alert", alert=alert, photo=photo)

    @classmethod
    def for_text(
        cls, text: str, *, photo: bytes | None = None, rule: str | None = None, severity: Severity | None = None
    ) -> Notification:
        """A plain text notification, optionally with a photo and a rule/severity for the filters."""
        return cls(kind="text", text=text, photo=photo, rule=rule, severity=severity)

    def render(self) -> str:
        """The text people read (Telegram message or photo caption); plain text, no markup."""
        if self.alert is None:
            return self.text
        alert = self.alert
        icon = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}[alert.severity]
        head = f"{icon} {alert.severity.upper()}: {alert.subject}"
        if alert.state != "open":
            head += f" ({alert.state}{' by ' + alert.acknowledged_by if alert.acknowledged_by else ''})"
        lines = [head, alert.message]
        details = [f"rule {alert.rule}"]
        if alert.count > 1:
            details.append(f"{alert.count} times")
        if alert.device:
            details.append(f"door {alert.device}")
        details.append(f"since {alert.first_at.isoformat(timespec='seconds').replace('+00:00', 'Z')}")
        lines.append(" · ".join(details))
        if self.text:
            lines.append(self.text)
        return "\n".join(line for line in lines if line)


@dataclass(frozen=True, slots=True)
class NotifyFilter:
    """Which notifications a notifier wants: ``rules`` (None = every rule) and a minimum severity.

    A notification without a rule (a plain text) passes the rule filter, one without a severity passes the
    severity filter: the filters narrow alerts, they do not silence messages sent on purpose.
    """

    rules: tuple[str, ...] | None = None
    min_severity: Severity = "info"

    def __post_init__(self) -> None:
        if self.min_severity not in _SEVERITY_RANK:
            raise ValueError(f"min_severity {self.min_severity!r} is not one of {', '.join(SEVERITIES)}")
        if self.rules is not None:
            object.__setattr__(self, "rules", tuple(self.rules))

    def wants(self, notification: Notification) -> bool:
        """Whether a notification passes the rule and severity filters."""
        if self.rules is not None and notification.rule is not None and notification.rule not in self.rules:
            return False
        return notification.severity is None or (
            _SEVERITY_RANK[notification.severity] >= _SEVERITY_RANK[self.min_severity]
        )


class Notifier(Protocol):
    """A way to tell people. ``send`` raises :class:`NotifyError` when delivery failed (the queue retries)."""

    name: str

    def wants(self, notification: Notification) -> bool:
        """Whether this notifier's rule/severity filters let the notification through."""
        ...

    def send(self, notification: Notification) -> None:
        """Deliver one notification, or raise :class:`NotifyError`."""
        ...


def _filter(rules: Iterable[str] | None, min_severity: Severity) -> NotifyFilter:
    return NotifyFilter(rules=None if rules is None else tuple(rules), min_severity=min_severity)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- Telegram ------------------------------------------------------------------------------------------------


class TelegramClient:
    """The subset of the Telegram Bot API rollcall uses: sendMessage, sendPhoto, getUpdates.

    ``base_url`` is configurable (a local Bot API server, or a test server). Every call checks the API's
    ``{"ok": true}`` and raises :class:`NotifyError` with the API's description, the HTTP status or the network
    error otherwise. The token never appears in error messages.
    """

    def __init__(self, token: str, *, base_url: str = TELEGRAM_API, timeout: float = 10.0) -> None:
        if not token or "/" in token or any(c.isspace() for c in token):
            raise ValueError("a Telegram bot token looks like 123456:ABC-DEF... (from @BotFather)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token = token

    def _url(self, method: str) -> str:
        return f"{self.base_url}/bot{self._token}/{method}"

    def _post(self, method: str, body: bytes, content_type: str, timeout: float | None) -> Any:
        request = urllib.request.Request(
            self._url(method), data=body, method="POST", headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout if timeout is None else timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            description = _telegram_description(raw) or exc.reason
            raise NotifyError(f"Telegram {method}: HTTP {exc.code}: {description}") from None
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, TLS, timeout (TimeoutError is an OSError)
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise NotifyError(
                f"Telegram {method}: cannot reach {self.base_url}: {reason or type(exc).__name__}"
            ) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise NotifyError(f"Telegram {method}: the answer is not JSON") from None
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            description = _telegram_description(raw) or "ok is not true"
            raise NotifyError(f"Telegram {method}: {description}")
        return answer.get("result")

    def call(self, method: str, params: Mapping[str, Any], *, timeout: float | None = None) -> Any:
        """Call a Bot API method with JSON parameters and return its ``result``."""
        return self._post(method, json.dumps(dict(params)).encode(), "application/json", timeout)

    def send_message(self, chat_id: int | str, text: str) -> None:
        """Send a plain-text message (no parse_mode, so nothing needs escaping)."""
        self.call("sendMessage", {"chat_id": chat_id, "text": _clip(text, TELEGRAM_TEXT_LIMIT)})

    def send_photo(self, chat_id: int | str, photo: bytes, caption: str = "", filename: str = "photo.jpg") -> None:
        """Upload a photo (multipart/form-data) with an optional plain-text caption."""
        fields = {"chat_id": str(chat_id)}
        if caption:
            fields["caption"] = _clip(caption, TELEGRAM_CAPTION_LIMIT)
        body, content_type = _multipart(fields, "photo", filename, photo, "image/jpeg")
        self._post("sendPhoto", body, content_type, None)

    def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        """Long-poll for updates after ``offset`` (the server waits up to ``timeout`` seconds for one)."""
        params: dict[str, Any] = {"timeout": timeout, "allowed_updates": ["message"]}
        if offset is not None:
            params["offset"] = offset
        result = self.call("getUpdates", params, timeout=timeout + self.timeout)
        if not isinstance(result, list):
            raise NotifyError("Telegram getUpdates: result is not a list")
        return [update for update in result if isinstance(update, dict)]


def _telegram_description(raw: bytes) -> str | None:
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    if isinstance(answer, dict) and isinstance(answer.get("description"), str):
        return str(answer["description"])
    return None


def _multipart(
    fields: Mapping[str, str], file_field: str, filename: str, data: bytes, content_type: str
) -> tuple[bytes, str]:
    boundary = f"rollcall-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class TelegramNotifier:
    """Sends notifications to one or more Telegram chats: ``sendMessage``, or ``sendPhoto`` with the text as caption.

    A retry after a partial failure sends only to the chats that did not get the notification yet.
    """

    def __init__(
        self,
        token: str,
        chat_ids: Sequence[int | str],
        *,
        base_url: str = TELEGRAM_API,
        name: str = "telegram",
        rules: Iterable[str] | None = None,
        min_severity: Severity = "info",
        timeout: float = 10.0,
    ) -> None:
        if not chat_ids:
            raise ValueError("Telegram needs at least one chat id")
        self.name = name
        self.chat_ids: list[int | str] = list(chat_ids)
        self.client = TelegramClient(token, base_url=base_url, timeout=timeout)
        self.filter = _filter(rules, min_severity)
        self._delivered: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The Bot API base URL."""
        return self.client.base_url

    def wants(self, notification: Notification) -> bool:
        """Whether the rule/severity filters let the notification through."""
        return self.filter.wants(notification)

    def send(self, notification: Notification) -> None:
        """Send to every chat that does not have it yet; raise :class:`NotifyError` naming the chats that failed."""
        with self._lock:
            done = self._delivered.setdefault(notification.id, set())
            while len(self._delivered) > 1000:  # remember recent partial deliveries only
                del self._delivered[next(iter(self._delivered))]
        text = notification.render()
        errors: list[str] = []
        for chat_id in self.chat_ids:
            if str(chat_id) in done:
                continue
            try:
                if notification.photo is not None:
                    self.client.send_photo(chat_id, notification.photo, caption=text)
                else:
                    self.client.send_message(chat_id, text)
            except NotifyError as exc:
                errors.append(f"chat {chat_id}: {exc}")
            else:
                done.add(str(chat_id))
        if errors:
            raise NotifyError("; ".join(errors))
        with self._lock:
            self._delivered.pop(notification.id, None)


AttendanceAnswer: TypeAlias = tuple[str, Sequence[tuple[str, bytes]]]
"""The answer to ``/attendance``: a text, and photos as (caption, JPEG bytes)."""

BOT_HELP = (
    "rollcall commands:\n"
    "/status - the site at a glance\n"
    "/who - who is in now\n"
    "/attendance [YYYY-MM-DD] - a day's arrivals and departures with photos (default: today)"
)


class TelegramBot:
    """Answers ``/status``, ``/who`` and ``/attendance [YYYY-MM-DD]`` in the configured chats (long-polling).

    The answers come from callables the hub provides: ``status()`` and ``who()`` return text, ``attendance(day)``
    (``day`` None = today) returns an :data:`AttendanceAnswer`. Messages from other chats are ignored and logged.
    Each update is answered once: the offset moves past it even when answering failed.
    """

    def __init__(
        self,
        token: str,
        chat_ids: Sequence[int | str],
        *,
        status: Callable[[], str],
        who: Callable[[], str],
        attendance: Callable[[date | None], AttendanceAnswer],
        base_url: str = TELEGRAM_API,
        poll_timeout: int = 25,
        timeout: float = 10.0,
        retry_after: float = 5.0,
    ) -> None:
        if not chat_ids:
            raise ValueError("the Telegram bot needs at least one chat id to answer")
        self.client = TelegramClient(token, base_url=base_url, timeout=timeout)
        self.chat_ids = {str(chat) for chat in chat_ids}
        self.status = status
        self.who = who
        self.attendance = attendance
        self.poll_timeout = poll_timeout
        self.retry_after = retry_after
        self.offset: int | None = None
        self.answered = 0
        self.ignored = 0
        self.poll_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start long-polling in the thread ``rollcall-telegram-bot``."""
        if self._thread is not None:
            raise RuntimeError("the bot is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rollcall-telegram-bot", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the polling thread to stop; True when it ended within ``timeout`` (default: one long poll)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(self.poll_timeout + self.client.timeout if timeout is None else timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except NotifyError as exc:
                self.poll_errors += 1
                log.warning("Telegram bot: %s; polling again in %.0f s", exc, self.retry_after)
                self._stop.wait(self.retry_after)
            except Exception:
                self.poll_errors += 1
                log.exception("Telegram bot: unexpected error; polling again in %.0f s", self.retry_after)
                self._stop.wait(self.retry_after)

    def poll_once(self, timeout: int | None = None) -> int:
        """Fetch one batch of updates and answer them; returns how many updates were handled."""
        updates = self.client.get_updates(self.offset, self.poll_timeout if timeout is None else timeout)
        for update in updates:
            update_id = update.get("update_id")
            if isinstance(update_id, int) and (self.offset is None or update_id >= self.offset):
                self.offset = update_id + 1
            try:
                self.handle_update(update)
            except Exception:
                log.exception("Telegram bot: failed to answer update %s", update_id)
        return len(updates)

    def handle_update(self, update: Mapping[str, Any]) -> bool:
        """Answer one update if it is a command from an allowed chat; True when answered."""
        message = update.get("message")
        if not isinstance(message, dict):
            return False
        chat = message.get("chat")
        text = message.get("text")
        if not isinstance(chat, dict) or not isinstance(text, str):
            return False
        chat_id = chat.get("id")
        if not isinstance(chat_id, int | str) or str(chat_id) not in self.chat_ids:
            self.ignored += 1
            log.warning("Telegram bot: ignored a message from chat %s (not in notify.telegram.chat_ids)", chat_id)
            return False
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return False
        command = words[0][1:].split("@", 1)[0].lower()
        args = words[1:]
        try:
            self._answer(chat_id, command, args)
        except NotifyError as exc:
            log.warning("Telegram bot: could not answer /%s in chat %s: %s", command, chat_id, exc)
            return False
        self.answered += 1
        return True

    def _answer(self, chat_id: int | str, command: str, args: list[str]) -> None:
        send = self.client.send_message
        try:
            if command == "status":
                send(chat_id, self.status())
            elif command == "who":
                send(chat_id, self.who())
            elif command == "attendance":
                if len(args) > 1:
                    send(chat_id, "Usage: /attendance [YYYY-MM-DD], for example /attendance 2026-11-21")
                    return
                day: date | None = None
                if args:
                    try:
                        day = date.fromisoformat(args[0]) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", args[0]) else None
                    except ValueError:
                        day = None
                    if day is None:
                        send(
                            chat_id,
                            f"{args[0]!r} is not a date. Usage: /attendance [YYYY-MM-DD], for example "
                            "/attendance 2026-11-21 (without a date: today)",
                        )
                        return
                text, photos = self.attendance(day)
                send(chat_id, text)
                for caption, photo in photos:
                    self.client.send_photo(chat_id, photo, caption=caption)
            else:
                send(chat_id, BOT_HELP)
        except NotifyError:
            raise
        except Exception as exc:
            log.exception("Telegram bot: /%s failed", command)
            send(chat_id, f"Sorry, /{command} failed: {type(exc).__name__}")


# --- webhook -------------------------------------------------------------------------------------------------


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Rollcall-Signature`` value for a body: ``sha256=<hex HMAC-SHA256 of the exact body bytes>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Check an ``X-Rollcall-Signature`` header against the exact body received (constant-time comparison)."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def webhook_body(notification: Notification) -> bytes:
    """The JSON body of a webhook delivery (photos are not sent: they are biometric data)."""
    doc: dict[str, Any]
    if notification.alert is not None:
        doc = {"type": "alert", "alert": json.loads(wire.encode(notification.alert))}
    else:
        doc = {"type": "text", "text": notification.text}
        if notification.rule is not None:
            doc["rule"] = notification.rule
        if notification.severity is not None:
            doc["severity"] = notification.severity
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would arrive as a GET without its body: treat a redirect as a failed delivery."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


class WebhookNotifier:
    """POSTs each notification as signed JSON; a non-2xx answer or a network error is a :class:`NotifyError`."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        name: str = "webhook",
        rules: Iterable[str] | None = None,
        min_severity: Severity = "info",
        timeout: float = 10.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {url!r} must start with http:// or https://")
        if len(secret) < 16:
            raise ValueError("the webhook secret must be at least 16 bytes")
        self.name = name
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.filter = _filter(rules, min_severity)

    def wants(self, notification: Notification) -> bool:
        """Whether the rule/severity filters let the notification through."""
        return self.filter.wants(notification)

    def send(self, notification: Notification) -> None:
        """POST one notification; the delivery id is the notification's id, the same on every retry."""
        body = webhook_body(notification)
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "rollcall-hub",
                SIGNATURE_HEADER: sign(self.secret, body),
                DELIVERY_HEADER: notification.id,
            },
        )
        try:
            with _NO_REDIRECTS.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:  # every status outside 2xx, redirects included
            detail = exc.read()[:200].decode("utf-8", "replace").strip()
            raise NotifyError(f"webhook {self.url}: HTTP {exc.code}{': ' + detail if detail else ''}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise NotifyError(f"webhook {self.url}: {reason or type(exc).__name__}") from None


# --- the delivery queue --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotifierStats:
    """One notifier's delivery counters (a snapshot)."""

    name: str
    queued: int
    delivered: int
    failed_attempts: int
    retries: int
    gave_up: int
    overflow: int
    consecutive_failures: int
    failing: bool
    last_error: str | None
    last_ok_at: float | None
    last_error_at: float | None


class _Lane:
    """One notifier's queue, counters and thread."""

    def __init__(self, notifier: Notifier, capacity: int) -> None:
        self.notifier = notifier
        self.items: deque[Notification] = deque(maxlen=capacity)
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        self.busy = False
        self.delivered = 0
        self.failed_attempts = 0
        self.retries = 0
        self.gave_up = 0
        self.overflow = 0
        self.consecutive_failures = 0
        self.failing = False
        self.last_error: str | None = None
        self.last_ok_at: float | None = None
        self.last_error_at: float | None = None


class NotificationQueue:
    """Delivers notifications without ever blocking the caller: one bounded queue and one thread per notifier.

    ``submit`` appends to the queue of every notifier that wants the notification and returns at once; when a queue
    is full its oldest item is dropped and counted (``overflow``). Each item is tried up to ``max_attempts`` times,
    waiting ``backoff_initial`` × 2^n seconds (capped at ``backoff_max``) between tries, then dropped and counted
    (``gave_up``). After ``failing_after`` consecutive failed attempts a notifier is *failing*: ``on_failing(name,
    error)`` is called once, and ``on_recovered(name)`` when a send succeeds again. ``sleep`` (default: an
    interruptible wait) and ``clock`` (for the stats' timestamps) can be injected for tests.
    """

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        capacity: int = 10_000,
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        failing_after: int = 3,
        on_failing: Callable[[str, Exception], None] | None = None,
        on_recovered: Callable[[str], None] | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [notifier.name for notifier in notifiers]
        if len(set(names)) != len(names):
            raise ValueError(f"notifier names must be unique, got {names}")
        if capacity < 1 or max_attempts < 1 or failing_after < 1:
            raise ValueError("capacity, max_attempts and failing_after must be at least 1")
        if backoff_initial < 0 or backoff_max < backoff_initial:
            raise ValueError("backoff_initial must be >= 0 and backoff_max >= backoff_initial")
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.failing_after = failing_after
        self.on_failing = on_failing
        self.on_recovered = on_recovered
        self.clock = clock
        self._stop = threading.Event()
        self._sleep: Callable[[float], object] = sleep if sleep is not None else self._stop.wait
        self._closing = False
        self._lanes = {notifier.name: _Lane(notifier, capacity) for notifier in notifiers}
        self.submitted = 0
        self.unwanted = 0

    def start(self) -> None:
        """Start one delivery thread per notifier (``rollcall-notify-<name>``)."""
        for name, lane in self._lanes.items():
            if lane.thread is None:
                lane.thread = threading.Thread(
                    target=self._run, args=(lane,), name=f"rollcall-notify-{name}", daemon=True
                )
                lane.thread.start()

    def submit(self, notification: Notification) -> int:
        """Queue a notification for every notifier that wants it; never blocks. Returns how many queued it."""
        self.submitted += 1
        queued = 0
        for lane in self._lanes.values():
            try:
                wanted = lane.notifier.wants(notification)
            except Exception:
                log.exception("notifier %s: wants() failed; not queued", lane.notifier.name)
                wanted = False
            if not wanted:
                continue
            with lane.cond:
                if self._closing:
                    continue
                if len(lane.items) == lane.items.maxlen:
                    lane.overflow += 1  # the deque drops its oldest item on append
                lane.items.append(notification)
                lane.cond.notify()
            queued += 1
        if queued == 0:
            self.unwanted += 1
        return queued

    def stats(self) -> dict[str, NotifierStats]:
        """A snapshot of every notifier's counters, by name."""
        result: dict[str, NotifierStats] = {}
        for name, lane in self._lanes.items():
            with lane.cond:
                result[name] = NotifierStats(
                    name=name,
                    queued=len(lane.items) + (1 if lane.busy else 0),
                    delivered=lane.delivered,
                    failed_attempts=lane.failed_attempts,
                    retries=lane.retries,
                    gave_up=lane.gave_up,
                    overflow=lane.overflow,
                    consecutive_failures=lane.consecutive_failures,
                    failing=lane.failing,
                    last_error=lane.last_error,
                    last_ok_at=lane.last_ok_at,
                    last_error_at=lane.last_error_at,
                )
        return result

    def stop(self, timeout: float = 5.0, *, drain: bool = True) -> bool:
        """Stop taking notifications and end the threads; True when all ended within ``timeout``.

        With ``drain`` the threads first deliver what is queued, for most of the timeout; then waits and retries
        are cut short and whatever is left is abandoned (threads stuck in a send end when it times out).
        """
        deadline = time.monotonic() + timeout
        for lane in self._lanes.values():
            with lane.cond:
                self._closing = True
                lane.cond.notify_all()
        threads = [lane.thread for lane in self._lanes.values() if lane.thread is not None]
        if drain:
            drain_until = time.monotonic() + timeout * 0.8
            for thread in threads:
                thread.join(max(0.0, drain_until - time.monotonic()))
        self._stop.set()
        for lane in self._lanes.values():
            with lane.cond:
                lane.cond.notify_all()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _run(self, lane: _Lane) -> None:
        while True:
            with lane.cond:
                while not lane.items and not self._closing and not self._stop.is_set():
                    lane.cond.wait()
                if self._stop.is_set() or not lane.items:
                    return
                item = lane.items.popleft()
                lane.busy = True
            try:
                self._deliver(lane, item)
            finally:
                with lane.cond:
                    lane.busy = False

    def _deliver(self, lane: _Lane, item: Notification) -> None:
        name = lane.notifier.name
        for attempt in range(1, self.max_attempts + 1):
            try:
                lane.notifier.send(item)
            except Exception as exc:  # a notifier bug must not end its thread: count it like a failed send
                recovered = False
                with lane.cond:
                    lane.failed_attempts += 1
                    lane.consecutive_failures += 1
                    lane.last_error = str(exc) or type(exc).__name__
                    lane.last_error_at = self.clock()
                    becomes_failing = not lane.failing and lane.consecutive_failures >= self.failing_after
                    if becomes_failing:
                        lane.failing = True
                log.warning("notifier %s: attempt %d/%d failed: %s", name, attempt, self.max_attempts, exc)
                if becomes_failing:
                    self._callback(self.on_failing, name, exc)
                if attempt == self.max_attempts:
                    break
                if self._stop.is_set():
                    return
                with lane.cond:
                    lane.retries += 1
                self._sleep(min(self.backoff_initial * 2 ** (attempt - 1), self.backoff_max))
                if self._stop.is_set():
                    return
            else:
                with lane.cond:
                    lane.delivered += 1
                    lane.consecutive_failures = 0
                    lane.last_ok_at = self.clock()
                    recovered = lane.failing
                    lane.failing = False
                if recovered:
                    log.info("notifier %s: delivering again", name)
                    self._callback(self.on_recovered, name)
                return
        with lane.cond:
            lane.gave_up += 1
        log.error("notifier %s: gave up on notification %s after %d attempts", name, item.id, self.max_attempts)

    @staticmethod
    def _callback(callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("notification queue: callback %r failed", callback)


# --- Home Assistant MQTT discovery ---------------------------------------------------------------------------

HA_DISCOVERY_PREFIX = "homeassistant"


class MqttMessage(NamedTuple):
    """One message to publish (QoS 1): Home Assistant configs and states are retained."""

    topic: str
    payload: bytes
    retain: bool = True


def ha_status_topic(discovery_prefix: str = HA_DISCOVERY_PREFIX) -> str:
    """Home Assistant's birth/will topic; ``online`` there means: publish the discovery configs again."""
    return f"{discovery_prefix}/status"


def ha_is_birth(topic: str, payload: bytes | str, discovery_prefix: str = HA_DISCOVERY_PREFIX) -> bool:
    """Whether a message is Home Assistant's birth message (``online`` on ``<discovery prefix>/status``)."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    return topic == ha_status_topic(discovery_prefix) and text.strip() == "online"


def _ha_id(value: str) -> str:
    """An id usable as a discovery node_id/object_id ([A-Za-z0-9_-]); injective: '_' → '__', '.' → '_d'."""
    return value.replace("_", "__").replace(".", "_d")


def _ha_node(topics: wire.Topics) -> str:
    return f"rollcall_{_ha_id(topics.site)}"


def _ha_base(topics: wire.Topics) -> str:
    return f"{topics.base}/ha"


def ha_person_topics(
    topics: wire.Topics, person_id: str, discovery_prefix: str = HA_DISCOVERY_PREFIX
) -> tuple[str, str, str]:
    """(config, state, attributes) topics of a person's device_tracker."""
    wire.check_id(person_id, "person id")
    config = f"{discovery_prefix}/device_tracker/{_ha_node(topics)}/person_{_ha_id(person_id)}/config"
    base = f"{_ha_base(topics)}/person/{person_id}"
    return config, f"{base}/state", f"{base}/attributes"


def ha_device_topics(
    topics: wire.Topics, device_id: str, discovery_prefix: str = HA_DISCOVERY_PREFIX
) -> tuple[str, str, str]:
    """(config, state, attributes) topics of a door device's connectivity binary_sensor."""
    wire.check_id(device_id, "device id")
    config = f"{discovery_prefix}/binary_sensor/{_ha_node(topics)}/device_{_ha_id(device_id)}/config"
    base = f"{_ha_base(topics)}/device/{device_id}"
    return config, f"{base}/state", f"{base}/attributes"


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _availability(topics: wire.Topics) -> dict[str, Any]:
    # The hub's retained status (last will "offline"): when the hub is gone, its entities are unavailable.
    return {
        "availability_topic": topics.hub_status(),
        "availability_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }


def _hub_device(topics: wire.Topics) -> dict[str, Any]:
    return {
        "identifiers": [_ha_node(topics)],
        "name": f"rollcall {topics.site}",
        "manufacturer": "rollcall",
        "model": "hub",
    }


_ORIGIN = {"name": "rollcall"}


def ha_discovery_messages(
    topics: wire.Topics,
    people: Iterable[tuple[str, str]],
    devices: Iterable[tuple[str, str]],
    prefix: str = HA_DISCOVERY_PREFIX,
) -> list[MqttMessage]:
    """Retained discovery configs: a person ``device_tracker`` and a door-device connectivity ``binary_sensor`` each.

    ``people`` and ``devices`` are (id, name) pairs. Publish the configs at start, whenever Home Assistant says
    ``online`` on ``<prefix>/status`` (:func:`ha_is_birth`), and when people or devices change.
    """
    messages: list[MqttMessage] = []
    node = _ha_node(topics)
    for person_id, name in people:
        config, state, attributes = ha_person_topics(topics, person_id, prefix)
        doc = {
            "name": name or person_id,
            "unique_id": f"{node}_person_{_ha_id(person_id)}",
            "state_topic": state,
            "json_attributes_topic": attributes,
            "payload_home": "home",
            "payload_not_home": "not_home",
            "icon": "mdi:account",
            "qos": 1,
            **_availability(topics),
            "device": _hub_device(topics),
            "origin": _ORIGIN,
        }
        messages.append(MqttMessage(config, _json(doc)))
    for device_id, name in devices:
        config, state, attributes = ha_device_topics(topics, device_id, prefix)
        doc = {
            "name": "Connectivity",
            "unique_id": f"{node}_device_{_ha_id(device_id)}",
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "state_topic": state,
            "json_attributes_topic": attributes,
            "payload_on": "ON",
            "payload_off": "OFF",
            "qos": 1,
            **_availability(topics),
            "device": {
                "identifiers": [f"{node}_device_{_ha_id(device_id)}"],
                "name": name or device_id,
                "manufacturer": "rollcall",
                "model": "door device",
                "via_device": node,
            },
            "origin": _ORIGIN,
        }
        messages.append(MqttMessage(config, _json(doc)))
    return messages


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def ha_state_messages(
    topics: wire.Topics,
    presence: wire.Presence | None = None,
    devices: Iterable[tuple[str, bool, datetime | None]] = (),
) -> list[MqttMessage]:
    """Retained states for the discovered entities.

    Per presence entry: ``home`` (state ``in``) or ``not_home``, with attributes ``last_door`` and ``last_seen`` (the
    door and time of the latest change). Per (device_id, online, last_seen): ``ON``/``OFF`` with ``last_seen``.
    """
    messages: list[MqttMessage] = []
    for entry in presence.people if presence is not None else ():
        _, state, attributes = ha_person_topics(topics, entry.person_id)
        messages.append(MqttMessage(state, b"home" if entry.state == "in" else b"not_home"))
        doc = {
            "person_id": entry.person_id,
            "presence": entry.state,
            "last_door": entry.door,
            "last_seen": _iso(entry.since),
        }
        messages.append(MqttMessage(attributes, _json(doc)))
    for device_id, online, last_seen in devices:
        _, state, attributes = ha_device_topics(topics, device_id)
        messages.append(MqttMessage(state, b"ON" if online else b"OFF"))
        messages.append(MqttMessage(attributes, _json({"device": device_id, "last_seen": _iso(last_seen)})))
    return messages


def ha_removal_messages(topics: wire.Topics, person_id: str, prefix: str = HA_DISCOVERY_PREFIX) -> list[MqttMessage]:
    """On erasure: empty retained payloads on the person's config, state and attributes topics.

    Home Assistant drops the entity, and the broker forgets the retained messages.
    """
    return [MqttMessage(topic, b"") for topic in ha_person_topics(topics, person_id, prefix)]


def ha_device_removal_messages(
    topics: wire.Topics, device_id: str, prefix: str = HA_DISCOVERY_PREFIX
) -> list[MqttMessage]:
    """Empty retained payloads that remove a door device's entity and its retained state."""
    return [MqttMessage(topic, b"") for topic in ha_device_topics(topics, device_id, prefix)]
