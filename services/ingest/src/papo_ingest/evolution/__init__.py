"""Evolution API v2 webhooks, parsed into papo's contracts. Plain code: no web framework, no broker."""

from papo_ingest.evolution.parser import (
    MESSAGES_UPSERT,
    ConnectionUpdate,
    Ignored,
    IntakePolicy,
    MalformedWebhook,
    event_name,
    parse_webhook,
)

__all__ = [
    "MESSAGES_UPSERT",
    "ConnectionUpdate",
    "Ignored",
    "IntakePolicy",
    "MalformedWebhook",
    "event_name",
    "parse_webhook",
]
