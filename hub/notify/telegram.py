"""Telegram: the Bot API client, alerts to chats, and the bot that answers /status, /who and /attendance."""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, tzinfo
from typing import Any, TypeAlias

from hub.notify.notification import Notification, NotifyError, Severity, notify_filter

log = logging.getLogger("rollcall.hub.notify")

TELEGRAM_API = "https://api.telegram.org"
TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        zone: tzinfo = UTC,
    ) -> None:
        if not chat_ids:
            raise ValueError("Telegram needs at least one chat id")
        self.name = name
        self.chat_ids: list[int | str] = list(chat_ids)
        self.client = TelegramClient(token, base_url=base_url, timeout=timeout)
        self.filter = notify_filter(rules, min_severity)
        self.zone = zone
        """The site's time zone: alert texts show its wall-clock times."""
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
        text = notification.render(self.zone)
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
