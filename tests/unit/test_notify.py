"""Notifications against real local HTTP servers: a Telegram Bot API subset, a signed webhook, the retrying queue."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo

import pytest

from edge.protocol import wire
from hub.homeassistant import (
    MqttMessage,
    ha_device_removal_messages,
    ha_discovery_messages,
    ha_is_birth,
    ha_removal_messages,
    ha_state_messages,
    ha_status_topic,
)
from hub.notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    Notification,
    NotificationQueue,
    NotifyError,
    NotifyFilter,
    Severity,
    TelegramBot,
    TelegramNotifier,
    WebhookNotifier,
    sign,
    verify_signature,
    webhook_body,
)

TOKEN = "123456:TEST-token_abc"
SECRET = b"0123456789abcdef-webhook-secret"
WAIT = 5.0  # upper bound for things that should happen at once; never reached when the code works


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _alert(
    rule: str = "door_offline", severity: Severity = "critical", subject: str = "Front door offline"
) -> wire.Alert:
    at = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
    return wire.Alert(
        alert_id="01M7YHX300QFT5FP537V3XMS9Z",
        rule=rule,
        severity=severity,
        state="open",
        subject=subject,
        message="door-1 has not been heard from for 5 minutes",
        first_at=at,
        last_at=at,
        count=1,
        device="door-1",
    )


# --- local servers -------------------------------------------------------------------------------------------


def _parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[bytes, str | None]]:
    """A strict multipart/form-data parser: name -> (raw bytes, filename)."""
    match = re.search(r"boundary=([^;]+)", content_type)
    assert match, content_type
    delimiter = b"--" + match.group(1).strip('"').encode()
    assert body.startswith(delimiter + b"\r\n"), body[:80]
    assert body.endswith(delimiter + b"--\r\n"), body[-80:]
    fields: dict[str, tuple[bytes, str | None]] = {}
    for chunk in body[: -len(delimiter + b"--\r\n")].split(delimiter + b"\r\n")[1:]:
        head, _, value = chunk.partition(b"\r\n\r\n")
        assert value.endswith(b"\r\n")
        disposition = head.decode()
        name = re.search(r'name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        assert name
        fields[name.group(1)] = (value[:-2], filename.group(1) if filename else None)
    return fields


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:0 in its own thread, handing POSTs to ``handle``."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = owner.handle(self.path, dict(self.headers.items()), body)
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    if 300 <= status < 400:
                        self.send_header("Location", "/elsewhere")
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="test-http", daemon=True
        )

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def release(self) -> None:
        """Let any request the server holds go."""


class FakeTelegram(_Server):
    """The Bot API subset rollcall uses: sendMessage (JSON), sendPhoto (multipart), getUpdates (long poll)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Condition()
        self.messages: list[tuple[int | str, str]] = []
        self.photos: list[tuple[str, str, bytes, str | None]] = []
        self.updates: list[dict[str, Any]] = []
        self.offsets: list[int | None] = []
        self.fail: str | None = None  # "http500" or "not_ok"
        self.fail_times = 0  # fail this many calls, then recover (-1: until fail is cleared)
        self.fail_chats: set[str] = set()
        self.calls = 0
        self._next_update = 100

    def push(self, chat_id: int, text: str) -> int:
        with self.lock:
            update_id = self._next_update
            self._next_update += 1
            self.updates.append(
                {
                    "update_id": update_id,
                    "message": {"message_id": update_id, "chat": {"id": chat_id, "type": "group"}, "text": text},
                }
            )
            self.lock.notify_all()
        return update_id

    def _failing(self) -> tuple[int, Any] | None:
        if self.fail is None or self.fail_times == 0:
            return None
        if self.fail_times > 0:
            self.fail_times -= 1
        if self.fail == "http500":
            return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
        return 200, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", path)
        if not match or match.group(1) != TOKEN:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = match.group(2)
        with self.lock:
            self.calls += 1
            failure = self._failing()
        if failure:
            return failure
        if method == "sendMessage":
            assert headers["Content-Type"] == "application/json"
            params = json.loads(body)
            assert "parse_mode" not in params
            with self.lock:
                if str(params["chat_id"]) in self.fail_chats:
                    return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
                self.messages.append((params["chat_id"], params["text"]))
            return 200, {"ok": True, "result": {"message_id": len(self.messages)}}
        if method == "sendPhoto":
            fields = _parse_multipart(body, headers["Content-Type"])
            chat = fields["chat_id"][0].decode()
            caption = fields["caption"][0].decode() if "caption" in fields else ""
            with self.lock:
                if chat in self.fail_chats:
                    return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
                self.photos.append((chat, caption, fields["photo"][0], fields["photo"][1]))
            return 200, {"ok": True, "result": {"message_id": len(self.photos)}}
        if method == "getUpdates":
            params = json.loads(body)
            offset = params.get("offset")
            deadline = time.monotonic() + min(float(params.get("timeout", 0)), 2.0)
            with self.lock:
                self.offsets.append(offset)
                if offset is not None:  # confirms every update before it, as Telegram does
                    self.updates = [u for u in self.updates if u["update_id"] >= offset]
                while not self.updates and time.monotonic() < deadline:
                    self.lock.wait(deadline - time.monotonic())
                return 200, {"ok": True, "result": list(self.updates)}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}


class FakeWebhook(_Server):
    """Checks the HMAC signature of every POST, records it, fails the first ``fail_times`` and can hold requests."""

    def __init__(self, fail_times: int = 0) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.received: list[tuple[dict[str, str], bytes, bool]] = []
        self.fail_times = fail_times
        self.hold = threading.Event()
        self.hold.set()
        self.held = threading.Event()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if not self.hold.is_set():
            self.held.set()
            self.hold.wait(WAIT)
        if path == "/moved":
            return 302, {"moved": True}
        valid = verify_signature(SECRET, body, headers.get(SIGNATURE_HEADER))
        with self.lock:
            self.received.append((headers, body, valid))
            if self.fail_times > 0:
                self.fail_times -= 1
                return 500, {"error": "down for maintenance"}
        if not valid:
            return 401, {"error": "bad signature"}
        return 200, {"received": True}

    def release(self) -> None:
        self.hold.set()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body, _ in self.received]


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def webhook() -> Iterator[FakeWebhook]:
    with FakeWebhook() as server:
        yield server


# --- notifications and filters -------------------------------------------------------------------------------


def test_alert_notification_takes_rule_and_severity_from_the_alert() -> None:
    notification = Notification.for_alert(_alert(rule="tailgating", severity="warning"))
    assert (notification.kind, notification.rule, notification.severity) == ("alert", "tailgating", "warning")
    assert "Front door offline" in notification.render() and "WARNING" in notification.render()
    with pytest.raises(ValueError, match="needs its alert"):
        Notification(kind="alert")
    with pytest.raises(ValueError, match="needs a text"):
        Notification(kind="text")


def test_filter_by_rule_and_minimum_severity() -> None:
    only_doors = NotifyFilter(rules=("door_offline",), min_severity="warning")
    assert only_doors.wants(Notification.for_alert(_alert("door_offline", "critical")))
    assert only_doors.wants(Notification.for_alert(_alert("door_offline", "warning")))
    assert not only_doors.wants(Notification.for_alert(_alert("door_offline", "info")))
    assert not only_doors.wants(Notification.for_alert(_alert("tailgating", "critical")))
    assert only_doors.wants(Notification.for_text("hub restarted"))  # no rule, no severity: sent on purpose
    assert not only_doors.wants(Notification.for_text("fyi", severity="info"))
    everything = NotifyFilter()
    assert everything.wants(Notification.for_alert(_alert("tailgating", "info")))
    with pytest.raises(ValueError, match="min_severity"):
        NotifyFilter(min_severity="loud")  # type: ignore[arg-type]


# --- Telegram ------------------------------------------------------------------------------------------------


def test_telegram_sends_to_every_chat(telegram: FakeTelegram) -> None:
    notifier = TelegramNotifier(TOKEN, [-1001, "42"], base_url=telegram.url)
    notifier.send(Notification.for_text("Ana arrived"))
    notifier.send(Notification.for_alert(_alert()))
    assert [chat for chat, _ in telegram.messages] == [-1001, "42", -1001, "42"]
    assert telegram.messages[0][1] == "Ana arrived"
    assert "Front door offline" in telegram.messages[2][1] and "CRITICAL" in telegram.messages[2][1]


def test_telegram_photo_upload_reaches_the_server_with_the_exact_bytes(telegram: FakeTelegram) -> None:
    # Every byte value, CRLFs and something that looks like a multipart delimiter: nothing may be altered.
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\r\n--rollcall-\r\n\r\n" + b"\xff\xd9"
    notifier = TelegramNotifier(TOKEN, [7, 8], base_url=telegram.url)
    notifier.send(Notification.for_text("first in: Ana Costa 08:02", photo=photo))
    assert [(chat, caption, data) for chat, caption, data, _ in telegram.photos] == [
        ("7", "first in: Ana Costa 08:02", photo),
        ("8", "first in: Ana Costa 08:02", photo),
    ]
    assert telegram.photos[0][3] == "photo.jpg"
    assert telegram.messages == []


def test_telegram_errors_carry_the_api_description(telegram: FakeTelegram) -> None:
    notifier = TelegramNotifier(TOKEN, [1], base_url=telegram.url)
    telegram.fail, telegram.fail_times = "not_ok", 1
    with pytest.raises(NotifyError, match="chat not found"):
        notifier.send(Notification.for_text("x"))
    telegram.fail, telegram.fail_times = "http500", 1
    with pytest.raises(NotifyError, match="HTTP 500: Internal Server Error"):
        notifier.send(Notification.for_text("x"))
    wrong_token = TelegramNotifier("999:wrong", [1], base_url=telegram.url)
    with pytest.raises(NotifyError, match="HTTP 401: Unauthorized") as info:
        wrong_token.send(Notification.for_text("x"))
    assert "999:wrong" not in str(info.value)
    notifier.send(Notification.for_text("recovered"))
    assert telegram.messages == [(1, "recovered")]


def test_telegram_unreachable_or_too_slow_is_a_notify_error(webhook: FakeWebhook) -> None:
    with _Server() as closed:
        url = closed.url
    with pytest.raises(NotifyError, match="cannot reach"):
        TelegramNotifier(TOKEN, [1], base_url=url, timeout=1.0).send(Notification.for_text("x"))
    webhook.hold.clear()  # a server that never answers in time
    with pytest.raises(NotifyError, match="cannot reach"):
        TelegramNotifier(TOKEN, [1], base_url=webhook.url, timeout=0.2).send(Notification.for_text("x"))


def test_telegram_retry_after_a_partial_failure_sends_only_to_the_chats_that_missed_it(
    telegram: FakeTelegram,
) -> None:
    notifier = TelegramNotifier(TOKEN, [1, 2, 3], base_url=telegram.url)
    notification = Notification.for_text("door-1 offline")
    telegram.fail_chats = {"2"}
    with pytest.raises(NotifyError, match="chat 2"):
        notifier.send(notification)
    telegram.fail_chats = set()
    notifier.send(notification)
    assert sorted(chat for chat, _ in telegram.messages) == [1, 2, 3]
    notifier.send(Notification.for_text("next"))
    assert len(telegram.messages) == 6


def _bot(telegram: FakeTelegram, calls: list[date | None], poll_timeout: int = 0, **kwargs: Any) -> TelegramBot:
    def attendance(day: date | None) -> tuple[str, list[tuple[str, bytes]]]:
        calls.append(day)
        return f"Attendance {day}: Ana Costa 08:02-17:10", [("Ana Costa in 08:02", b"jpeg-in"), ("out", b"jpeg-out")]

    return TelegramBot(
        TOKEN,
        [-1001],
        status=lambda: "2 doors online, 3 people in",
        who=lambda: "In now: Ana Costa, Bo Li",
        attendance=attendance,
        base_url=telegram.url,
        poll_timeout=poll_timeout,
        **kwargs,
    )


def test_bot_answers_status_and_who_once_and_advances_the_offset(telegram: FakeTelegram) -> None:
    bot = _bot(telegram, [])
    first = telegram.push(-1001, "/status")
    telegram.push(-1001, "/who@rollcall_bot")
    assert bot.poll_once() == 2
    assert telegram.messages == [(-1001, "2 doors online, 3 people in"), (-1001, "In now: Ana Costa, Bo Li")]
    assert bot.offset == first + 2
    assert bot.poll_once() == 0  # the answered updates are confirmed and never answered again
    assert telegram.offsets == [None, first + 2]
    assert len(telegram.messages) == 2


def test_bot_attendance_for_a_date_sends_text_and_photos(telegram: FakeTelegram) -> None:
    calls: list[date | None] = []
    bot = _bot(telegram, calls)
    telegram.push(-1001, "/attendance 2026-11-21")
    telegram.push(-1001, "/attendance")
    bot.poll_once()
    assert calls == [date(2026, 11, 21), None]
    assert telegram.messages[0] == (-1001, "Attendance 2026-11-21: Ana Costa 08:02-17:10")
    assert [(chat, caption, data) for chat, caption, data, _ in telegram.photos[:2]] == [
        ("-1001", "Ana Costa in 08:02", b"jpeg-in"),
        ("-1001", "out", b"jpeg-out"),
    ]
    assert len(telegram.photos) == 4


@pytest.mark.parametrize("argument", ["bad-date", "2026-13-01", "21.11.2026"])
def test_bot_attendance_with_a_bad_date_explains_the_format(telegram: FakeTelegram, argument: str) -> None:
    calls: list[date | None] = []
    bot = _bot(telegram, calls)
    telegram.push(-1001, f"/attendance {argument}")
    bot.poll_once()
    assert calls == []
    assert len(telegram.messages) == 1
    assert argument in telegram.messages[0][1] and "YYYY-MM-DD" in telegram.messages[0][1]


def test_bot_ignores_other_chats_and_logs_them(telegram: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    bot = _bot(telegram, [])
    telegram.push(555, "/who")
    with caplog.at_level(logging.WARNING, logger="rollcall.hub.notify"):
        assert bot.poll_once() == 1
    assert telegram.messages == [] and bot.ignored == 1
    assert "555" in caplog.text
    telegram.push(-1001, "/help")
    bot.poll_once()
    assert telegram.messages[0][0] == -1001 and "/attendance" in telegram.messages[0][1]


def test_bot_thread_survives_a_failing_api_and_stops(telegram: FakeTelegram) -> None:
    bot = _bot(telegram, [], poll_timeout=1, retry_after=0.05)
    telegram.fail, telegram.fail_times = "http500", 3
    telegram.push(-1001, "/status")
    bot.start()
    try:
        _wait_for(lambda: len(telegram.messages) == 1, "the bot to answer after the API recovered")
        assert bot.poll_errors == 3
        assert any(t.name == "rollcall-telegram-bot" for t in threading.enumerate())
    finally:
        assert bot.stop(timeout=WAIT)
    assert telegram.messages == [(-1001, "2 doors online, 3 people in")]


# --- webhook -------------------------------------------------------------------------------------------------


def test_webhook_posts_signed_json_that_verifies_and_a_tampered_body_does_not(webhook: FakeWebhook) -> None:
    notifier = WebhookNotifier(f"{webhook.url}/hooks/rollcall", SECRET)
    alert = _alert()
    notifier.send(Notification.for_alert(alert))
    notifier.send(Notification.for_text("hub restarted"))
    (headers, body, valid), (_, text_body, text_valid) = webhook.received
    assert valid and text_valid
    assert headers["Content-Type"] == "application/json"
    assert str(uuid.UUID(headers[DELIVERY_HEADER])) == headers[DELIVERY_HEADER]
    assert json.loads(body) == {
        "type": "alert",
        "text": Notification.for_alert(alert).render(),  # UTC: the notifier was given no site zone
        "alert": json.loads(wire.encode(alert)),
    }
    assert json.loads(text_body) == {"type": "text", "text": "hub restarted"}
    signature = headers[SIGNATURE_HEADER]
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", signature)
    assert verify_signature(SECRET, body, signature)
    assert not verify_signature(SECRET, body.replace(b"Front door", b"Back door"), signature)
    assert not verify_signature(b"another-secret-of-16+bytes", body, signature)
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, signature.removeprefix("sha256="))
    assert sign(SECRET, body) == signature


def test_webhook_failure_is_a_notify_error(webhook: FakeWebhook) -> None:
    webhook.fail_times = 1
    notifier = WebhookNotifier(webhook.url, SECRET)
    with pytest.raises(NotifyError, match="HTTP 500"):
        notifier.send(Notification.for_text("x"))
    wrong_secret = WebhookNotifier(webhook.url, b"not-the-right-secret")
    with pytest.raises(NotifyError, match="HTTP 401"):
        wrong_secret.send(Notification.for_text("x"))
    with pytest.raises(NotifyError, match="HTTP 302"):  # a redirected POST would lose its body
        WebhookNotifier(f"{webhook.url}/moved", SECRET).send(Notification.for_text("x"))
    with _Server() as closed:
        url = closed.url
    with pytest.raises(NotifyError):
        WebhookNotifier(url, SECRET, timeout=1.0).send(Notification.for_text("x"))
    assert len(webhook.received) == 2  # the redirect target was never asked
    with pytest.raises(ValueError, match="at least 16 bytes"):
        WebhookNotifier(webhook.url, b"short")


# --- the queue -----------------------------------------------------------------------------------------------


def test_queue_retries_with_exponential_backoff_and_delivers_after_the_server_recovers(
    webhook: FakeWebhook,
) -> None:
    webhook.fail_times = 5
    delays: list[float] = []
    queue = NotificationQueue(
        [WebhookNotifier(webhook.url, SECRET)], max_attempts=10, backoff_max=8.0, sleep=delays.append
    )
    queue.start()
    try:
        queue.submit(Notification.for_text("door-1 offline"))
        _wait_for(lambda: queue.stats()["webhook"].delivered == 1, "delivery after recovery")
    finally:
        assert queue.stop(WAIT)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(webhook.received) == 6
    assert len({headers[DELIVERY_HEADER] for headers, _, _ in webhook.received}) == 1  # one delivery id: dedupable
    stats = queue.stats()["webhook"]
    assert (stats.failed_attempts, stats.retries, stats.gave_up, stats.queued) == (5, 5, 0, 0)


def test_queue_gives_up_after_max_attempts_and_goes_on_with_the_next(webhook: FakeWebhook) -> None:
    webhook.fail_times = 3
    queue = NotificationQueue([WebhookNotifier(webhook.url, SECRET)], max_attempts=3, sleep=lambda _: None)
    queue.start()
    try:
        queue.submit(Notification.for_text("lost"))
        queue.submit(Notification.for_text("delivered"))
        _wait_for(lambda: queue.stats()["webhook"].delivered == 1, "the second notification")
    finally:
        assert queue.stop(WAIT)
    assert [body["text"] for body in webhook.bodies()] == ["lost", "lost", "lost", "delivered"]
    assert queue.stats()["webhook"].gave_up == 1


def test_failing_fires_once_after_n_failures_and_recovered_after_a_success(telegram: FakeTelegram) -> None:
    events: list[tuple[str, str]] = []
    telegram.fail, telegram.fail_times = "http500", 6
    queue = NotificationQueue(
        [TelegramNotifier(TOKEN, [1], base_url=telegram.url)],
        max_attempts=4,
        failing_after=3,
        sleep=lambda _: None,
        on_failing=lambda name, error: events.append(("failing", f"{name}: {error}")),
        on_recovered=lambda name: events.append(("recovered", name)),
    )
    queue.start()
    try:
        queue.submit(Notification.for_text("one"))  # 4 failed attempts, given up
        queue.submit(Notification.for_text("two"))  # 2 more failures, then delivered
        _wait_for(lambda: queue.stats()["telegram"].delivered == 1, "delivery after recovery")
        assert [kind for kind, _ in events] == ["failing", "recovered"]
        assert events[0][1].startswith("telegram: ") and "HTTP 500" in events[0][1]
        assert not queue.stats()["telegram"].failing
        telegram.fail, telegram.fail_times = "not_ok", 3
        queue.submit(Notification.for_text("three"))
        _wait_for(lambda: queue.stats()["telegram"].delivered == 2, "the third notification")
    finally:
        assert queue.stop(WAIT)
    assert [kind for kind, _ in events] == ["failing", "recovered", "failing", "recovered"]
    assert "chat not found" in events[2][1]
    assert telegram.messages == [(1, "two"), (1, "three")]


def test_submit_never_blocks_while_a_notifier_hangs(webhook: FakeWebhook, telegram: FakeTelegram) -> None:
    webhook.hold.clear()  # the webhook server holds every request until released
    queue = NotificationQueue(
        [WebhookNotifier(webhook.url, SECRET, timeout=WAIT), TelegramNotifier(TOKEN, [1], base_url=telegram.url)]
    )
    queue.start()
    try:
        queue.submit(Notification.for_text("n0"))
        assert webhook.held.wait(WAIT), "the webhook request should be in flight"
        started = time.monotonic()
        for i in range(1, 200):
            queue.submit(Notification.for_text(f"n{i}"))
        assert time.monotonic() - started < 1.0  # the hanging server costs submit nothing
        # One slow notifier does not hold up the others.
        _wait_for(lambda: len(telegram.messages) == 200, "telegram to get everything while the webhook hangs")
        assert webhook.received == [] and queue.stats()["webhook"].queued == 200
        webhook.release()
        _wait_for(lambda: len(webhook.received) == 200, "the webhook to catch up")
    finally:
        webhook.release()
        assert queue.stop(WAIT)
    assert [body["text"] for body in webhook.bodies()] == [f"n{i}" for i in range(200)]


def test_overflow_drops_the_oldest_and_counts(webhook: FakeWebhook) -> None:
    webhook.hold.clear()
    queue = NotificationQueue([WebhookNotifier(webhook.url, SECRET, timeout=WAIT)], capacity=3)
    queue.start()
    try:
        queue.submit(Notification.for_text("in flight"))
        assert webhook.held.wait(WAIT)
        for i in range(10):
            queue.submit(Notification.for_text(f"n{i}"))
        stats = queue.stats()["webhook"]
        assert (stats.overflow, stats.queued) == (7, 4)
        webhook.release()
        _wait_for(lambda: len(webhook.received) == 4, "the kept notifications")
    finally:
        webhook.release()
        assert queue.stop(WAIT)
    assert [body["text"] for body in webhook.bodies()] == ["in flight", "n7", "n8", "n9"]


def test_queue_routes_by_filter_and_stop_drains(webhook: FakeWebhook, telegram: FakeTelegram) -> None:
    queue = NotificationQueue(
        [
            WebhookNotifier(webhook.url, SECRET, min_severity="info"),
            TelegramNotifier(TOKEN, [1], base_url=telegram.url, rules=["door_offline"], min_severity="critical"),
        ]
    )
    assert queue.submit(Notification.for_alert(_alert("door_offline", "critical"))) == 2
    assert queue.submit(Notification.for_alert(_alert("door_offline", "warning"))) == 1
    assert queue.submit(Notification.for_alert(_alert("tailgating", "critical"))) == 1
    queue.start()  # submitted before start: delivered once the threads run, and stop waits for them
    assert queue.stop(WAIT)
    assert len(webhook.received) == 3 and len(telegram.messages) == 1
    assert queue.submit(Notification.for_text("after stop")) == 0
    with pytest.raises(ValueError, match="unique"):
        NotificationQueue([WebhookNotifier(webhook.url, SECRET), WebhookNotifier(webhook.url, SECRET)])


# --- Home Assistant ------------------------------------------------------------------------------------------

TOPICS = wire.Topics("hq")
CONFIG_TOPIC = re.compile(r"^homeassistant/(device_tracker|binary_sensor)/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/config$")
DEVICE_KEYS = {"identifiers", "name"}


def _configs(messages: list[MqttMessage]) -> dict[str, dict[str, Any]]:
    assert all(message.retain for message in messages)
    return {message.topic: json.loads(message.payload) for message in messages}


def test_ha_discovery_payloads_have_the_keys_home_assistant_requires() -> None:
    messages = ha_discovery_messages(
        TOPICS, [("p-01", "Ana Costa"), ("p_x.1", "Bo Li")], [("door-1", "Front door")], prefix="homeassistant"
    )
    configs = _configs(messages)
    assert len(configs) == 3
    for topic, config in configs.items():
        match = CONFIG_TOPIC.match(topic)
        assert match, topic
        assert match.group(2) == "rollcall_hq"
        for key in ("name", "unique_id", "state_topic", "json_attributes_topic", "availability_topic", "device"):
            assert config[key], (topic, key)
        assert config["device"].keys() >= DEVICE_KEYS and config["device"]["identifiers"]
        assert config["availability_topic"] == TOPICS.hub_status()
        assert {config["payload_available"], config["payload_not_available"]} == {"online", "offline"}
        assert config["state_topic"].startswith("rollcall/hq/ha/")
    ana = configs["homeassistant/device_tracker/rollcall_hq/person_p-01/config"]
    assert ana["name"] == "Ana Costa"
    assert (ana["payload_home"], ana["payload_not_home"]) == ("home", "not_home")
    assert ana["state_topic"] == "rollcall/hq/ha/person/p-01/state"
    assert ana["json_attributes_topic"] == "rollcall/hq/ha/person/p-01/attributes"
    assert "homeassistant/device_tracker/rollcall_hq/person_p__x_d1/config" in configs  # '.' is not allowed there
    door = configs["homeassistant/binary_sensor/rollcall_hq/device_door-1/config"]
    assert door["device_class"] == "connectivity"
    assert (door["payload_on"], door["payload_off"]) == ("ON", "OFF")
    assert door["state_topic"] == "rollcall/hq/ha/device/door-1/state"
    assert door["device"]["name"] == "Front door"
    assert len({config["unique_id"] for config in configs.values()}) == 3
    for config in configs.values():  # the HA topics are outside the rollcall wire contract
        with pytest.raises(wire.WireError):
            wire.parse_topic(config["state_topic"])


def test_ha_states_and_birth_message() -> None:
    since = datetime(2026, 11, 21, 8, 2, tzinfo=UTC)
    presence = wire.Presence(
        at=since,
        people=[
            wire.PresenceEntry(person_id="p-01", name="Ana Costa", state="in", since=since, door="door-1"),
            wire.PresenceEntry(person_id="p-02", name="Bo Li", state="out", since=None, door=None),
        ],
    )
    messages = ha_state_messages(TOPICS, presence, [("door-1", True, since), ("door-2", False, None)])
    assert all(message.retain for message in messages)
    states = {message.topic: message.payload for message in messages}
    assert states["rollcall/hq/ha/person/p-01/state"] == b"home"
    assert states["rollcall/hq/ha/person/p-02/state"] == b"not_home"
    attributes = json.loads(states["rollcall/hq/ha/person/p-01/attributes"])
    assert attributes["last_door"] == "door-1" and attributes["last_seen"] == "2026-11-21T08:02:00Z"
    assert states["rollcall/hq/ha/device/door-1/state"] == b"ON"
    assert states["rollcall/hq/ha/device/door-2/state"] == b"OFF"
    assert ha_status_topic() == "homeassistant/status"
    assert ha_is_birth("homeassistant/status", b"online")
    assert not ha_is_birth("homeassistant/status", b"offline")
    assert not ha_is_birth("other/status", b"online")


def test_ha_removal_publishes_empty_retained_payloads_on_config_and_state_topics() -> None:
    removal = ha_removal_messages(TOPICS, "p-01")
    assert {message.topic for message in removal} == {
        "homeassistant/device_tracker/rollcall_hq/person_p-01/config",
        "rollcall/hq/ha/person/p-01/state",
        "rollcall/hq/ha/person/p-01/attributes",
    }
    assert all(message.payload == b"" and message.retain for message in removal)
    discovered = {message.topic for message in ha_discovery_messages(TOPICS, [("p-01", "Ana Costa")], [])}
    assert discovered <= {message.topic for message in removal}
    device_removal = ha_device_removal_messages(TOPICS, "door-1")
    assert "homeassistant/binary_sensor/rollcall_hq/device_door-1/config" in {m.topic for m in device_removal}
    with pytest.raises(ValueError):
        ha_removal_messages(TOPICS, "../etc")


def test_docs_examples_match_what_the_code_sends() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text(encoding="utf-8")
    person_config = json.loads(re.findall(r"```json\n(.*?)```", doc, re.S)[0])
    (ana,) = ha_discovery_messages(TOPICS, [("p-01", "Ana Costa")], [])
    assert person_config == json.loads(ana.payload)
    webhook_example = re.search(r"```http\n.*?\n\n(.*?)\n```", doc, re.S)
    assert webhook_example
    berlin = ZoneInfo("Europe/Berlin")  # the docs' site
    assert webhook_example.group(1).encode() == webhook_body(Notification.for_alert(_alert()), berlin)
    telegram_example = re.search(r"Alerts arrive as plain text.*?```\n(.*?)\n```", doc, re.S)
    assert telegram_example
    assert telegram_example.group(1) == Notification.for_alert(_alert()).render(berlin)


def test_discard_drops_queued_notifications_naming_a_person_and_stops_retrying_the_one_in_flight(
    webhook: FakeWebhook,
) -> None:
    webhook.fail_times = 1  # the one in flight fails once, then must not be tried again
    proceed = threading.Event()

    def sleep(_: float) -> None:
        proceed.wait(WAIT)

    queue = NotificationQueue([WebhookNotifier(webhook.url, SECRET)], max_attempts=5, sleep=sleep)
    queue.start()
    try:
        queue.submit(Notification.for_text("Zofia Canary left by door-1"))
        _wait_for(lambda: len(webhook.received) == 1, "the first, failed attempt")
        queue.submit(Notification.for_text("p-canary1 not arrived"))
        queue.submit(Notification.for_text("door-2 offline"))
        dropped = queue.discard(lambda item: item.names("p-canary1", "Zofia Canary"))
        assert dropped == 2
        proceed.set()
        _wait_for(lambda: queue.stats()["webhook"].delivered == 1, "the notification naming nobody")
    finally:
        proceed.set()
        assert queue.stop(WAIT)
    assert [body["text"] for body in webhook.bodies()] == ["Zofia Canary left by door-1", "door-2 offline"]
