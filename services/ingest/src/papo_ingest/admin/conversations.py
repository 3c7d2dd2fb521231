"""Admin routes of one conversation: pause, resume, status, history, erasure; and which conversation an admin
URL names: an Evolution instance and the person's canonical JID."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter, QueryParameter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from papo_common import control
from papo_common.contracts import ConversationRef
from papo_common.contracts.base import INSTANCE_MAX_LENGTH, PRINTABLE
from papo_common.privacy import conversation_ref
from papo_ingest.admin.dependencies import AdminDependencies, available
from papo_ingest.admin.erasure import erase_from_indexes, erase_keys, erase_rows
from papo_ingest.admin.history import MAX_PAGE_SIZE, Cursor, HistoryPage, InvalidCursor, history_page
from papo_ingest.evolution.identity import PHONE_SUFFIX, normalize_jid
from papo_ingest.openapi import ADMIN_RESPONSES, StrictBody
from papo_ingest.senders import forget_identities

logger = logging.getLogger(__name__)

MAX_PAUSE_MINUTES = 7 * 24 * 60

PHONE_NUMBER = r"\+?[0-9]{5,20}"
JID = r"[0-9A-Za-z._-]{1,48}(:[0-9]{1,4})?@(s\.whatsapp\.net|lid|g\.us|newsletter)"
"""What an admin may type for a person: 48 characters of user part are far more than any WhatsApp id, and
keep `instance:user_id` inside the contracts' limit for any instance name."""
_PHONE_NUMBER = re.compile(PHONE_NUMBER)
_JID = re.compile(JID, re.IGNORECASE)

Instance = Annotated[
    str,
    Parameter(
        min_length=1, max_length=INSTANCE_MAX_LENGTH, pattern=PRINTABLE, description="the instance's name"
    ),
]
UserId = Annotated[
    str,
    Parameter(
        pattern=f"^({PHONE_NUMBER}|{JID})$",
        description="a phone number (digits) or a WhatsApp JID such as 5511999990000@s.whatsapp.net",
    ),
]


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(default=30, ge=1, le=MAX_PAUSE_MINUTES)


class ConversationController(Controller):
    path = "/instances/{instance:str}/conversations/{user_id:str}"

    @post("/pause", status_code=200, responses=ADMIN_RESPONSES)
    async def pause(
        self, state: State, instance: Instance, user_id: UserId, data: StrictBody[PauseRequest]
    ) -> dict[str, Any]:
        """Stop the bot answering this conversation for `minutes` (a human takes over)."""
        admin, conversation = _resolve(state, instance, user_id)
        async with available("redis"):
            await control.pause(
                admin.redis, admin.redis_prefix, conversation, seconds=data.minutes * 60, reason="admin"
            )
            answer = await _status(admin, conversation)
        logger.info("admin paused a conversation", extra={**_audit(conversation), "minutes": data.minutes})
        return answer

    @post("/resume", status_code=200, responses=ADMIN_RESPONSES)
    async def resume(self, state: State, instance: Instance, user_id: UserId) -> dict[str, Any]:
        """Let the bot answer again now, whoever paused it."""
        admin, conversation = _resolve(state, instance, user_id)
        async with available("redis"):
            was_paused = await control.resume(admin.redis, admin.redis_prefix, conversation)
            answer = await _status(admin, conversation)
        logger.info("admin resumed a conversation", extra={**_audit(conversation), "was_paused": was_paused})
        return {**answer, "was_paused": was_paused}

    @get("/status", responses=ADMIN_RESPONSES)
    async def status(self, state: State, instance: Instance, user_id: UserId) -> dict[str, Any]:
        """Whether the bot is paused for this conversation, why, and for how much longer."""
        admin, conversation = _resolve(state, instance, user_id)
        async with available("redis"):
            return await _status(admin, conversation)

    @get("/messages", responses=ADMIN_RESPONSES)
    async def messages(
        self,
        state: State,
        instance: Instance,
        user_id: UserId,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 50,
        before: Annotated[str | None, QueryParameter(max_length=512)] = None,
    ) -> HistoryPage:
        """The conversation's messages, newest first; `next_cursor` is the `before` of the next page."""
        admin, conversation = _resolve(state, instance, user_id)
        try:
            cursor = Cursor.decode(before) if before else None
        except InvalidCursor as error:
            raise ClientException(detail=str(error)) from error
        async with available("postgresql"):
            page = await history_page(admin.engine, conversation, limit=limit, before=cursor)
        if page is None:
            raise NotFoundException(detail="no such conversation")
        return page

    @delete("/", status_code=200, responses=ADMIN_RESPONSES)
    async def erase(self, state: State, instance: Instance, user_id: UserId) -> dict[str, Any]:
        """Erase everything papo keeps about this conversation (a data subject's erasure request)."""
        admin, conversation = _resolve(state, instance, user_id)
        async with available("postgresql"):
            rows = await erase_rows(admin.engine, conversation)
        async with available("redis"):
            keys = await erase_keys(admin.redis, admin.redis_prefix, conversation)
            indexes = await erase_from_indexes(admin.redis, admin.redis_prefix, conversation)
            await forget_identities(admin.redis, admin.redis_prefix, conversation)
        summary = {
            "conversations_deleted": rows.conversations,
            "messages_deleted": rows.messages,
            "redis_keys_deleted": keys,
            "redis_index_entries_deleted": indexes,
        }
        logger.info("admin erased a conversation", extra={**_audit(conversation), **summary})
        return {"instance": conversation.instance, "user_id": conversation.user_id, **summary}


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
    if not _JID.fullmatch(value):
        raise InvalidConversation(
            "user_id must be a phone number (digits) or a WhatsApp JID such as 5511999990000@s.whatsapp.net"
        )
    return normalize_jid(value).lower()


def conversation_from_path(instance: str, user_id: str) -> ConversationRef:
    """The conversation named by `/admin/instances/{instance}/conversations/{user_id}`."""
    if not instance.strip() or len(instance) > INSTANCE_MAX_LENGTH:
        raise InvalidConversation(f"instance must be 1 to {INSTANCE_MAX_LENGTH} characters")
    try:
        return ConversationRef(instance=instance, user_id=canonical_user_id(user_id))
    except ValidationError as error:
        raise InvalidConversation("instance must be printable, without control characters") from error


def _resolve(state: State, instance: Instance, user_id: UserId) -> tuple[AdminDependencies, ConversationRef]:
    try:
        conversation = conversation_from_path(instance, user_id)
    except InvalidConversation as error:
        raise ClientException(detail=str(error)) from error
    admin: AdminDependencies = state.admin
    return admin, conversation


async def _status(admin: AdminDependencies, conversation: ConversationRef) -> dict[str, Any]:
    reason = await control.paused_reason(admin.redis, admin.redis_prefix, conversation)
    seconds_left = await control.paused_for(admin.redis, admin.redis_prefix, conversation)
    return {
        "instance": conversation.instance,
        "user_id": conversation.user_id,
        "paused": reason is not None,
        "reason": reason,
        "seconds_left": round(seconds_left, 3) if reason is not None else 0,
    }


def _audit(conversation: ConversationRef) -> dict[str, str]:
    # an audit trail that names the conversation without writing a person's phone number into the logs;
    # keyed (PAPO_LOG_HASH_KEY), because phone numbers are few enough to hash every one of them
    return {"instance": conversation.instance, "conversation": conversation_ref(conversation.key)}
