"""The debounce service: FastStream consumer of `papo.debounce` plus the Redis-driven flush loop."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from papo_common.periodic import Periodic
from papo_common.redis import make_redis
from papo_common.redis_durability import require_durable_redis
from papo_common.service import consumer_app, make_service_broker, serve
from papo_debounce.debouncer import Debouncer
from papo_debounce.flusher import Flusher
from papo_debounce.handlers import register_handlers
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore


def create_app(settings: DebounceSettings | None = None) -> AsgiFastStream:
    settings = settings or DebounceSettings()
    broker = make_service_broker("debounce", settings)
    redis = make_redis(settings.redis_url.get_secret_value())
    store = DebounceStore(redis, settings)
    publish_burst = register_handlers(broker, Debouncer(store, redis, settings))
    poll_interval = settings.debounce_poll_interval_ms / 1000
    flusher = Flusher(store, publish_burst, poll_interval=poll_interval)
    # no timer per conversation: every replica polls Redis for due bursts and claims them atomically
    flush_loop = Periodic(
        "debounce-flusher", flusher.flush_due, interval=poll_interval, delay=flusher.next_delay
    )
    return consumer_app(
        broker,
        checks={"redis": redis.ping},
        after_startup=[flush_loop.start],
        on_shutdown=[flush_loop.stop],
        after_shutdown=[redis.aclose],
    )


def main() -> None:
    settings = DebounceSettings()
    app = create_app(settings)
    require_durable_redis(settings)
    serve(app, settings)
