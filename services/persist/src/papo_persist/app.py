"""persist's service: the batch consumer of `papo.persist` and the PostgreSQL pool behind it, with the
health, readiness and /metrics routes every service has."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from faststream.rabbit import RabbitBroker

from papo_common.db import asyncpg_dsn
from papo_common.service import consumer_app, declaring_broker, make_service_broker, serve
from papo_common.topology import PERSIST
from papo_persist.consumer import BatchConsumer
from papo_persist.database import PostgresWriter
from papo_persist.handlers import declare_input
from papo_persist.settings import PersistSettings


def create_app(settings: PersistSettings | None = None) -> AsgiFastStream:
    """The persist service as an ASGI app: consumes `papo.persist`, serves /healthz, /readyz and /metrics."""
    settings = settings or PersistSettings()
    broker = make_service_broker("persist", settings)
    dsn = asyncpg_dsn(settings.database_url.get_secret_value())
    writer = PostgresWriter(timeout_s=settings.persist_write_timeout_s)
    consumer = BatchConsumer(
        settings.rabbitmq_url.get_secret_value(),
        PERSIST,
        writer,
        batch_size=settings.persist_batch_size,
        batch_wait_s=settings.persist_batch_wait_ms / 1000,
        prefetch=settings.prefetch,
        max_backoff_s=settings.persist_outage_backoff_max_s,
    )

    async def open_pool() -> None:
        await writer.open(dsn, max_size=settings.database_pool_size)

    app = consumer_app(
        broker,
        checks={"postgres": writer.ping},
        on_startup=[open_pool],
        after_startup=[consumer.start],
        on_shutdown=[consumer.stop],
        after_shutdown=[writer.close],
    )
    app.context.set_global("persist_consumer", consumer)  # its counters, for tests and debugging
    return app


def specification_broker() -> RabbitBroker:
    """A broker that declares persist's input, for its AsyncAPI document (the running service consumes
    through its `BatchConsumer`)."""
    return declaring_broker(PersistSettings(), declare_input)


def main() -> None:
    """Run persist the way its container does."""
    settings = PersistSettings()
    serve(create_app(settings), settings)
