"""Who a message is from, as a canonical WhatsApp JID, across Evolution's `@lid` addressing changes.

2.3.1–2.3.4 rewrite `remoteJid` to Baileys' `senderPn` and keep the `@lid` in `previousRemoteJid`; 2.3.5–2.3.6
pass Baileys 7's key through (`remoteJid` may be the `@lid`, `remoteJidAlt` the phone JID, or the reverse);
2.3.7 copies `remoteJidAlt` over an `@lid` `remoteJid`; 2.4 swaps the pair. Whatever the version, the phone JID
(`@s.whatsapp.net`) wins when one is present anywhere in the pair, else the `@lid`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

PHONE_SUFFIX = "@s.whatsapp.net"
LID_SUFFIX = "@lid"
GROUP_SUFFIX = "@g.us"
NEWSLETTER_SUFFIX = "@newsletter"
BROADCAST_SUFFIX = "@broadcast"
STATUS_JID = "status@broadcast"


class ChatKind(Enum):
    DIRECT = "direct"
    GROUP = "group"
    STATUS = "status"
    BROADCAST = "broadcast"
    NEWSLETTER = "newsletter"


def chat_kind(remote_jid: str) -> ChatKind:
    """What kind of chat a `remoteJid` names."""
    if remote_jid == STATUS_JID:
        return ChatKind.STATUS
    if remote_jid.endswith(BROADCAST_SUFFIX):
        return ChatKind.BROADCAST
    if remote_jid.endswith(GROUP_SUFFIX):
        return ChatKind.GROUP
    if remote_jid.endswith(NEWSLETTER_SUFFIX):
        return ChatKind.NEWSLETTER
    return ChatKind.DIRECT


def normalize_jid(jid: str) -> str:
    """Drop the device part (`user:device@server` → `user@server`) so all of a person's devices are one."""
    user, at, server = jid.strip().partition("@")
    if not at:
        return jid.strip()
    return f"{user.split(':', 1)[0]}@{server}"


def as_jid(value: str) -> str:
    """A JID from a `remoteJid`: the EVOLUTION channel echoes a send's `number` as given, bare digits and all."""
    digits = value.strip().lstrip("+")
    if "@" not in digits and digits.isdigit():
        return f"{digits}{PHONE_SUFFIX}"
    return normalize_jid(value)


def _jids(candidates: Iterable[Any]) -> list[str]:
    return [jid for c in candidates if isinstance(c, str) and "@" in (jid := as_jid(c))]


def preferred_jid(candidates: Iterable[Any]) -> str | None:
    """The first phone JID among the candidates, else the first `@lid`, else the first JID at all."""
    jids = _jids(candidates)
    for suffix in (PHONE_SUFFIX, LID_SUFFIX):
        for jid in jids:
            if jid.endswith(suffix):
                return jid
    return jids[0] if jids else None


def _direct_chat_jids(key: dict[str, Any]) -> tuple[Any, ...]:
    return (key.get("remoteJid"), key.get("remoteJidAlt"), key.get("senderPn"), key.get("previousRemoteJid"))


def sender_of_direct_chat(key: dict[str, Any]) -> str | None:
    """The person on the other side of a one-to-one chat."""
    return preferred_jid(_direct_chat_jids(key))


def aliases_of_direct_chat(key: dict[str, Any], person: str) -> tuple[str, ...]:
    """The person's other JIDs in this key (a phone JID and an `@lid` of one person), for the identity map."""
    others = {
        j for j in _jids(_direct_chat_jids(key)) if j != person and j.endswith((PHONE_SUFFIX, LID_SUFFIX))
    }
    return tuple(sorted(others))


def participant_of(key: dict[str, Any], data: dict[str, Any]) -> str | None:
    """The author of a group or status message (`key.participant` and its alternates)."""
    return preferred_jid(
        (
            key.get("participant"),
            key.get("participantAlt"),
            key.get("participantPn"),
            data.get("participant"),
        )
    )
