"""Which conversation an admin URL names: an Evolution instance and the person's canonical JID."""

from __future__ import annotations

import re

from papo_common.contracts import ConversationRef
from papo_ingest.evolution.identity import (
    GROUP_SUFFIX,
    LID_SUFFIX,
    NEWSLETTER_SUFFIX,
    PHONE_SUFFIX,
    normalize_jid,
)

MAX_ID_LENGTH = 128
"""The width of `conversations.instance` and `conversations.user_id`."""

_KNOWN_SERVERS = (PHONE_SUFFIX, LID_SUFFIX, GROUP_SUFFIX, NEWSLETTER_SUFFIX)
_PHONE_NUMBER = re.compile(r"\+?[0-9]{5,20}")
_JID_USER = re.compile(r"[0-9A-Za-z._-]+")


class InvalidConversation(ValueError):
    """The instance or user id in the URL cannot name a conversation."""


def canonical_user_id(raw: str) -> str:
    """The canonical JID for a user id as an admin may type it.

    Bare digits (optionally with a leading `+`) are a phone number: `5511999990000` becomes
    `5511999990000@s.whatsapp.net`. A JID keeps its server (`@s.whatsapp.net`, `@lid`, and `@g.us` or
    `@newsletter` when those chats are accepted) and loses its device part, as ingest stores it.
    """
    value = raw.strip()
    if _PHONE_NUMBER.fullmatch(value):
        return value.lstrip("+") + PHONE_SUFFIX
    jid = normalize_jid(value).lower()
    user, at, _ = jid.partition("@")
    if not at or not _JID_USER.fullmatch(user) or not jid.endswith(_KNOWN_SERVERS):
        raise InvalidConversation(
            "user_id must be a phone number (digits) or a WhatsApp JID such as 5511999990000@s.whatsapp.net"
        )
    if len(jid) > MAX_ID_LENGTH:
        raise InvalidConversation(f"user_id is longer than {MAX_ID_LENGTH} characters")
    return jid


def conversation_from_path(instance: str, user_id: str) -> ConversationRef:
    """The conversation named by `/admin/instances/{instance}/conversations/{user_id}`."""
    if not instance.strip() or len(instance) > MAX_ID_LENGTH:
        raise InvalidConversation(f"instance must be 1 to {MAX_ID_LENGTH} characters")
    return ConversationRef(instance=instance, user_id=canonical_user_id(user_id))
