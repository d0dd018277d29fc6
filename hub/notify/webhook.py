"""Webhooks: each notification POSTed as JSON, signed with HMAC-SHA256, never following a redirect."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import UTC, tzinfo
from typing import Any

from edge.protocol import wire
from hub.notify.notification import Notification, NotifyError, Severity, notify_filter

SIGNATURE_HEADER = "X-Rollcall-Signature"
DELIVERY_HEADER = "X-Rollcall-Delivery"


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Rollcall-Signature`` value for a body: ``sha256=<hex HMAC-SHA256 of the exact body bytes>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Check an ``X-Rollcall-Signature`` header against the exact body received (constant-time comparison)."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def webhook_body(notification: Notification, zone: tzinfo = UTC) -> bytes:
    """The JSON body of a webhook delivery (photos are not sent: they are biometric data).

    An alert carries the wire payload (times ISO 8601 UTC) and ``text``, what Telegram would show, in ``zone``'s
    local time.
    """
    doc: dict[str, Any]
    if notification.alert is not None:
        doc = {"type": "alert", "text": notification.render(zone), "alert": json.loads(wire.encode(notification.alert))}
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
        zone: tzinfo = UTC,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {url!r} must start with http:// or https://")
        if len(secret) < 16:
            raise ValueError("the webhook secret must be at least 16 bytes")
        self.name = name
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.zone = zone
        """The site's time zone, for the ``text`` of alerts."""
        self.filter = notify_filter(rules, min_severity)

    def wants(self, notification: Notification) -> bool:
        """Whether the rule/severity filters let the notification through."""
        return self.filter.wants(notification)

    def send(self, notification: Notification) -> None:
        """POST one notification; the delivery id is the notification's id, the same on every retry."""
        body = webhook_body(notification, self.zone)
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
