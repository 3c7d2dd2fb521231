"""What logs may say about a person: a keyed hash of their conversation, never the number, JID or text."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import cache

LOG_HASH_KEY_ENV = "PAPO_LOG_HASH_KEY"


@cache
def _key() -> bytes:
    # without a configured key the refs still hide the number, but only correlate within one process
    configured = os.environ.get(LOG_HASH_KEY_ENV)
    return configured.encode() if configured else secrets.token_bytes(32)


def conversation_ref(key: str) -> str:
    """A short, stable stand-in for a conversation key (`<instance>:<user JID>`) in logs.

    HMAC-SHA256 with the secret in `PAPO_LOG_HASH_KEY`, so a phone number cannot be recovered by hashing every
    number; the same key gives the same ref in every service and replica that shares the secret.
    """
    return hmac.new(_key(), key.encode(), hashlib.sha256).hexdigest()[:12]
