"""The one MQTT client helper every rollcall process uses: persistent session, last will, status, reconnect."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge.protocol.config import MqttSettings
from edge.protocol.wire import PayloadBase, Status, encode, now_utc

log = logging.getLogger("rollcall.mqtt")

StatusState = Literal["online", "offline", "stopped"]


@dataclass(frozen=True, slots=True)
class Received:
    """A message as handed to a link's callback."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class _ReconnectAttemptsAreNotErrors(logging.Filter):
    """paho's "Client is not connected", which it logs at ERROR on every reconnect attempt, moved to DEBUG.

    While the broker is away that line came every 2 s of an outage, for hours; the link already says once that it is
    reconnecting, and the device's health tells the outage.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class PublishFailed(RuntimeError):
    """paho refused to queue a publish (for example: payload too large, or the link is stopped)."""


class MqttLink:
    """A paho-mqtt 2.x client configured the rollcall way.

    - fixed client id and a persistent session (clean session off), so QoS 1 messages wait for us at the broker;
    - a retained last will ``offline`` on the status topic, ``online`` published on every (re)connect and
      ``stopped`` on a clean :meth:`stop`;
    - automatic reconnect with exponential backoff between ``reconnect_min_s`` and ``reconnect_max_s``, and every
      subscription made again on each connect (a broker that lost our session still routes to us);
    - TLS and username/password or client certificate from :class:`MqttSettings`.

    Callbacks run on paho's network thread (named after the client id); an exception in one is logged, never
    allowed to kill that thread.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        status_topic: str | None = None,
        status_entity: str | None = None,
        software: str | None = None,
        on_message: Callable[[Received], None] | None = None,
        on_connection_change: Callable[[bool], None] | None = None,
        clean_session: bool = False,
        clock: Callable[[], datetime] = now_utc,
        max_inflight: int = 200,
    ) -> None:
        if status_topic is not None and status_entity is None:
            raise ValueError("status_topic needs status_entity (the device, agent or hub id it speaks for)")
        self.settings = settings
        self.client_id = client_id
        self.status_topic = status_topic
        self._status_entity = status_entity
        self._software = software
        self._on_message = on_message
        self._on_connection_change = on_connection_change
        self._clock = clock
        self._subscriptions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sub_cond = threading.Condition(self._lock)
        self._pending_subacks: set[int] = set()
        self._early_subacks: set[int] = set()
        self._connected = threading.Event()
        self._stopping = False
        self._started = False
        self.connect_count = 0
        """How many times a connection was established (1 on first connect; more after reconnects)."""

        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
        )
        paho_log = logging.getLogger(f"rollcall.mqtt.paho.{client_id}")
        if not any(isinstance(f, _ReconnectAttemptsAreNotErrors) for f in paho_log.filters):
            paho_log.addFilter(_ReconnectAttemptsAreNotErrors())
        client.enable_logger(paho_log)
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        # paho's default of 20 unacknowledged QoS 1 publishes would throttle an outbox draining after an outage.
        client.max_inflight_messages_set(max_inflight)
        if settings.username:
            client.username_pw_set(settings.username, settings.resolved_password())
        if settings.tls.enabled:
            tls = settings.tls
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if tls.insecure_skip_verify else ssl.CERT_REQUIRED,
            )
            if tls.insecure_skip_verify:
                client.tls_insecure_set(True)
        if status_topic is not None:
            client.will_set(status_topic, self._status_payload("offline", with_time=False), qos=1, retain=True)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        client.on_socket_open = self._handle_socket_open
        self._client = client

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in the background; returns at once, also when the broker is down."""
        if self._started:
            raise RuntimeError("MqttLink.start() called twice")
        self._started = True
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (True) or ``timeout`` seconds pass (False)."""
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until connected and every subscription made so far is acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        if not self._connected.wait(timeout):
            return False
        with self._sub_cond:
            while self._pending_subacks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._sub_cond.wait(remaining)
        return True

    @property
    def connected(self) -> bool:
        """Whether the link is connected right now."""
        return self._connected.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``stopped`` (when connected), disconnect cleanly so the will is not sent, stop the thread."""
        if not self._started:
            return
        self._stopping = True
        if self.status_topic is not None and self.connected:
            info = self._client.publish(self.status_topic, self._status_payload("stopped"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("%s: could not publish 'stopped' before disconnecting", self.client_id)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._started = False

    # --- messaging ---------------------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now (if connected) and again on every reconnect."""
        with self._lock:
            self._subscriptions[topic_filter] = qos
        if self.connected:
            self._send_subscribe(topic_filter, qos)

    def _send_subscribe(self, topic_filter: str, qos: int) -> None:
        # paho may deliver the SUBACK on its thread before subscribe() returns here, so a mid can be "early".
        result, mid = self._client.subscribe(topic_filter, qos)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return  # not connected after all: the next connect subscribes again
        with self._sub_cond:
            if mid in self._early_subacks:
                self._early_subacks.discard(mid)
            else:
                self._pending_subacks.add(mid)

    def publish(
        self, topic: str, payload: bytes | PayloadBase, qos: int = 1, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        """Queue a publish; QoS 1 messages published while disconnected go out after reconnecting."""
        data = encode(payload) if isinstance(payload, PayloadBase) else payload
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishFailed(f"publish to {topic} refused: {paho.error_string(info.rc)}")
        return info

    # --- paho callbacks (network thread) -----------------------------------------------------------------------

    def _status_payload(self, state: StatusState, with_time: bool = True) -> bytes:
        assert self._status_entity is not None
        status = Status(
            client=self._status_entity,
            state=state,
            at=self._clock() if with_time else None,
            software=self._software,
        )
        return encode(status)

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.error("%s: broker refused the connection: %s", self.client_id, reason_code)
            return
        self.connect_count += 1
        log.info(
            "%s: connected to %s:%s (session present: %s)",
            self.client_id,
            self.settings.host,
            self.settings.port,
            flags.session_present,
        )
        with self._lock:
            subscriptions = list(self._subscriptions.items())
        with self._sub_cond:
            self._pending_subacks.clear()  # acks of a previous connection will never come
            self._early_subacks.clear()
        for topic_filter, qos in subscriptions:
            self._send_subscribe(topic_filter, qos)
        if self.status_topic is not None:
            client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
        self._connected.set()
        self._notify_connection(True)

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if not self._stopping:
            log.warning("%s: disconnected (%s); reconnecting with backoff", self.client_id, reason_code)
        if was_connected:
            self._notify_connection(False)

    @staticmethod
    def _handle_socket_open(client: paho.Client, userdata: Any, sock: Any) -> None:
        # Small QoS 1 packets and their acks otherwise wait on Nagle's algorithm and delayed ACKs (~40 ms each way).
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _handle_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        failed = [code for code in reason_codes if code.is_failure]
        if failed:
            log.error("%s: broker refused a subscription: %s", self.client_id, failed)
        with self._sub_cond:
            if mid in self._pending_subacks:
                self._pending_subacks.discard(mid)
            else:
                self._early_subacks.add(mid)
            self._sub_cond.notify_all()

    def _notify_connection(self, up: bool) -> None:
        if self._on_connection_change is None:
            return
        try:
            self._on_connection_change(up)
        except Exception:
            log.exception("%s: connection-change callback failed", self.client_id)

    def _handle_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if self._on_message is None:
            return
        received = Received(message.topic, bytes(message.payload), message.qos, bool(message.retain))
        try:
            self._on_message(received)
        except Exception:
            log.exception("%s: message handler failed on %s", self.client_id, message.topic)
