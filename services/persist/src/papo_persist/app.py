"""persist's service: its queue's handler, the batcher and the database engine behind it."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from papo_common.db.engine import make_engine
from papo_common.service import consumer_app, make_service_broker, serve
from papo_persist.batcher import Batcher
from papo_persist.handlers import register_handlers
from papo_persist.rows import PersistedContract
from papo_persist.settings import PersistSettings
from papo_persist.writer import PostgresWriter


def create_app(settings: PersistSettings | None = None) -> AsgiFastStream:
    """The persist service as an ASGI app: consumes `papo.persist`, serves /healthz, /readyz and /metrics."""
    settings = settings or PersistSettings()
    broker = make_service_broker("persist", settings)
    engine = make_engine(settings.database_url.get_secret_value(), pool_size=settings.database_pool_size)
    batcher: Batcher[PersistedContract] = Batcher(
        PostgresWriter(engine, timeout_s=settings.persist_write_timeout_s),
        max_size=settings.persist_batch_size,
        max_wait_s=settings.persist_batch_wait_ms / 1000,
        outage_retry_s=settings.persist_outage_retry_s,
    )
    register_handlers(broker, batcher)

    async def database_ready() -> None:
        await _select_one(engine)

    async def release() -> None:
        await batcher.stop()
        await engine.dispose()

    app = consumer_app(
        broker,
        checks={"postgres": database_ready},
        on_startup=[batcher.start],
        # after the broker has drained: its graceful stop waits for handlers, which wait for their batch
        after_shutdown=[release],
    )
    app.context.set_global("persist_batcher", batcher)  # its counters, for tests and debugging
    return app


async def _select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def main() -> None:
    """Run persist the way its container does."""
    settings = PersistSettings()
    serve(create_app(settings), settings)
