"""The llm service: consumes `burst.ready`, publishes `reply.ready`."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from faststream.rabbit import RabbitBroker

from papo_common.contracts import ConversationRef
from papo_common.db import asyncpg_dsn
from papo_common.periodic import Periodic
from papo_common.redis import ConversationKeys, make_redis
from papo_common.redis_durability import require_durable_redis
from papo_common.service import consumer_app, declaring_broker, make_service_broker, serve
from papo_common.topology import LLM
from papo_llm.archive import HistoryArchive
from papo_llm.engines import make_engine
from papo_llm.handlers import consume, declare_input, declare_publishers
from papo_llm.history import HistoryStore
from papo_llm.sessions import SessionKeeper
from papo_llm.settings import LlmSettings
from papo_llm.turns import TurnTaker


def create_app(settings: LlmSettings | None = None) -> AsgiFastStream:
    """The llm's broker, handler, readiness checks (Redis, PostgreSQL, a local model) and shutdown hooks."""
    settings = settings or LlmSettings()
    broker = make_service_broker(LLM.service, settings)
    redis = make_redis(settings.redis_url.get_secret_value())
    chat_engine = make_engine(settings)
    archive = HistoryArchive()

    store = HistoryStore(
        redis, ttl_seconds=settings.llm_history_ttl_seconds, max_turns=settings.llm_history_max_turns
    )

    publishers = declare_publishers(broker)

    async def forget_history(conversation: ConversationRef) -> None:
        await store.forget(ConversationKeys(settings.redis_key_prefix, conversation))

    sessions = SessionKeeper(
        redis,
        settings.redis_key_prefix,
        idle_seconds=settings.session_idle_seconds,
        publish=publishers.session_closed,
        forget=forget_history,
    )
    sweeper = Periodic(
        "llm-session-sweeper", sessions.sweep, interval=settings.session_sweep_interval_seconds
    )
    consumer = consume(
        settings,
        TurnTaker(
            settings=settings,
            redis=redis,
            engine=chat_engine,
            store=store,
            archive=archive,
            publish=publishers.reply,
            sessions=sessions,
        ),
    )

    async def redis_ready() -> None:
        await redis.ping()

    async def close() -> None:
        await chat_engine.aclose()
        await redis.aclose()
        await archive.close()

    async def open_archive() -> None:
        await archive.open(
            asyncpg_dsn(settings.database_url.get_secret_value()), max_size=settings.database_pool_size
        )

    # The engine closes after the consumer let the turns in flight finish: they use it until then.
    return consumer_app(
        broker,
        checks={"redis": redis_ready, "postgresql": archive.ping, **chat_engine.readiness_checks()},
        on_startup=[open_archive, chat_engine.start],
        after_startup=[consumer.start, sweeper.start],
        on_shutdown=[consumer.stop, sweeper.stop],
        after_shutdown=[close],
    )


def specification_broker() -> RabbitBroker:
    """A broker that declares the llm's input and outputs, for its AsyncAPI document (the running service
    consumes through its `MessageConsumer`)."""
    settings = LlmSettings()
    return declaring_broker(settings, lambda broker: declare_input(broker, settings), declare_publishers)


def main() -> None:
    """Run the llm service (`papo run llm`)."""
    settings = LlmSettings()
    app = create_app(settings)
    require_durable_redis(settings)
    serve(app, settings)
