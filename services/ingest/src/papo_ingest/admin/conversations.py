"""Admin routes of one conversation: pause, resume, status, history, erasure."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any

from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody, QueryParameter
from pydantic import BaseModel, ConfigDict, Field

from papo_common import control
from papo_common.contracts import ConversationRef
from papo_ingest.admin.cursor import Cursor, InvalidCursor
from papo_ingest.admin.dependencies import AdminDependencies, available
from papo_ingest.admin.erasure import erase_from_indexes, erase_keys, erase_rows
from papo_ingest.admin.history import MAX_PAGE_SIZE, HistoryPage, history_page
from papo_ingest.admin.identity import InvalidConversation, conversation_from_path

logger = logging.getLogger(__name__)

MAX_PAUSE_MINUTES = 7 * 24 * 60

Instance = FromPath[str]
UserId = FromPath[str]


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(default=30, ge=1, le=MAX_PAUSE_MINUTES)


class ConversationController(Controller):
    path = "/instances/{instance:str}/conversations/{user_id:str}"
    include_in_schema = False

    @post("/pause", status_code=200)
    async def pause(
        self, state: State, instance: Instance, user_id: UserId, data: JSONBody[PauseRequest]
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

    @post("/resume", status_code=200)
    async def resume(self, state: State, instance: Instance, user_id: UserId) -> dict[str, Any]:
        """Let the bot answer again now, whoever paused it."""
        admin, conversation = _resolve(state, instance, user_id)
        async with available("redis"):
            was_paused = await control.resume(admin.redis, admin.redis_prefix, conversation)
            answer = await _status(admin, conversation)
        logger.info("admin resumed a conversation", extra={**_audit(conversation), "was_paused": was_paused})
        return {**answer, "was_paused": was_paused}

    @get("/status")
    async def status(self, state: State, instance: Instance, user_id: UserId) -> dict[str, Any]:
        """Whether the bot is paused for this conversation, why, and for how much longer."""
        admin, conversation = _resolve(state, instance, user_id)
        async with available("redis"):
            return await _status(admin, conversation)

    @get("/messages")
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

    @delete("/", status_code=200)
    async def erase(self, state: State, instance: Instance, user_id: UserId) -> dict[str, Any]:
        """Erase everything papo keeps about this conversation (a data subject's erasure request)."""
        admin, conversation = _resolve(state, instance, user_id)
        async with available("postgresql"):
            rows = await erase_rows(admin.engine, conversation)
        async with available("redis"):
            keys = await erase_keys(admin.redis, admin.redis_prefix, conversation)
            indexes = await erase_from_indexes(admin.redis, admin.redis_prefix, conversation)
        summary = {
            "conversations_deleted": rows.conversations,
            "messages_deleted": rows.messages,
            "redis_keys_deleted": keys,
            "redis_index_entries_deleted": indexes,
        }
        logger.info("admin erased a conversation", extra={**_audit(conversation), **summary})
        return {"instance": conversation.instance, "user_id": conversation.user_id, **summary}


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
    # an audit trail that names the conversation without writing a person's phone number into the logs
    digest = hashlib.sha256(conversation.key.encode()).hexdigest()[:16]
    return {"instance": conversation.instance, "conversation": digest}
