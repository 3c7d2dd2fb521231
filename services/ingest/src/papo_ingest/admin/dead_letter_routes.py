"""Admin routes of the dead-letter queues: list without removing, replay to where messages came from."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException
from litestar.params import QueryParameter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from papo_ingest.admin.dead_letters import DEAD_LETTER_QUEUES, MAX_LISTED, MAX_SCANNED, peek, replay
from papo_ingest.admin.dependencies import AdminDependencies, available
from papo_ingest.openapi import ADMIN_RESPONSES, StrictBody

MAX_REPLAYED = 500
DEAD_LETTER_QUEUE = "^(" + "|".join(re.escape(name) for name in sorted(DEAD_LETTER_QUEUES)) + ")$"
_REPLAY_TIMEOUT_SECONDS = 120.0


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: Annotated[str, StringConstraints(pattern=DEAD_LETTER_QUEUE)]
    limit: int = Field(default=10, ge=1, le=MAX_REPLAYED)
    """How many messages to replay from the head of the queue (ignored with `message_ids`)."""
    message_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_SCANNED)
    """Replay exactly these (AMQP `message_id`s, as the listing shows them)."""


class DeadLetterController(Controller):
    path = "/dead-letters"

    @get("/", responses=ADMIN_RESPONSES)
    async def list_dead_letters(
        self,
        state: State,
        queue: Annotated[str, QueryParameter(pattern=DEAD_LETTER_QUEUE)],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LISTED)] = 20,
    ) -> dict[str, Any]:
        """Up to `limit` messages from the head of a dead-letter queue; they all stay in it."""
        admin = _admin(state, queue)
        async with available("rabbitmq"), admin.dead_letters.channel() as channel:
            depth, messages = await peek(channel, queue, limit)
        return {"queue": queue, "depth": depth, "messages": messages}

    @post("/replay", status_code=200, responses=ADMIN_RESPONSES)
    async def replay(self, state: State, data: StrictBody[ReplayRequest]) -> Response[dict[str, Any]]:
        """Send dead letters back through the `papo` exchange; 503 (with what was done) if it stopped early."""
        admin = _admin(state, data.queue)
        async with (
            available("rabbitmq", seconds=_REPLAY_TIMEOUT_SECONDS),
            admin.dead_letters.channel() as channel,
        ):
            report = await replay(channel, data.queue, limit=data.limit, message_ids=data.message_ids or ())
        body = {"status": "replayed" if report.error is None else "stopped", **vars(report)}
        return Response(body, status_code=200 if report.error is None else 503)


def _admin(state: State, queue: str) -> AdminDependencies:
    if queue not in DEAD_LETTER_QUEUES:
        raise ClientException(detail=f"queue must be one of: {', '.join(sorted(DEAD_LETTER_QUEUES))}")
    admin: AdminDependencies = state.admin
    return admin
