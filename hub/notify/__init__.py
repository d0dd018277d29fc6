"""Notifications: Telegram alerts and commands, signed webhooks, and a retrying delivery queue in front of them."""

from hub.notify.delivery import NotificationQueue, NotifierStats
from hub.notify.notification import (
    SEVERITIES,
    Notification,
    NotificationChannel,
    NotifyError,
    NotifyFilter,
    Severity,
    notify_filter,
)
from hub.notify.telegram import (
    BOT_HELP,
    TELEGRAM_API,
    AttendanceAnswer,
    TelegramBot,
    TelegramClient,
    TelegramNotifier,
)
from hub.notify.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, WebhookNotifier, sign, verify_signature, webhook_body

__all__ = [
    "BOT_HELP",
    "DELIVERY_HEADER",
    "SEVERITIES",
    "SIGNATURE_HEADER",
    "TELEGRAM_API",
    "AttendanceAnswer",
    "Notification",
    "NotificationChannel",
    "NotificationQueue",
    "NotifierStats",
    "NotifyError",
    "NotifyFilter",
    "Severity",
    "TelegramBot",
    "TelegramClient",
    "TelegramNotifier",
    "WebhookNotifier",
    "notify_filter",
    "sign",
    "verify_signature",
    "webhook_body",
]
