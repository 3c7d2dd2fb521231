"""The debounce service: the consumer of `papo.debounce` plus the Redis-driven flush loop."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from faststream.rabbit import RabbitBroker

from papo_common.broker import ConfirmedPublisher
from papo_common.periodic import Periodic
from papo_common.redis import make_redis
from papo_common.redis_durability import require_durable_redis
from papo_common.service import consumer_app, declaring_broker, make_service_broker, serve
from papo_debounce.debouncer import Debouncer
from papo_debounce.flusher import Flusher
from papo_debounce.handlers import consume, declare_input, declare_output
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore


def create_app(settings: DebounceSettings | None = None) -> AsgiFastStream:
    settings = settings or DebounceSettings()
    broker = make_service_broker("debounce", settings)
    redis = make_redis(settings.redis_url.get_secret_value())
    store = DebounceStore(redis, settings)
    consumer = consume(settings, Debouncer(store, redis, settings))
    publish_burst = ConfirmedPublisher(broker, declared=declare_output(broker))
    poll_interval = settings.debounce_poll_interval_ms / 1000
    flusher = Flusher(store, publish_burst, poll_interval=poll_interval)
    # no timer per conversation: every replica polls Redis for due bursts and claims them atomically
    flush_loop = Periodic(
        "debounce-flusher", flusher.flush_due, interval=poll_interval, delay=flusher.next_delay
    )
    return consumer_app(
        broker,
        checks={"redis": redis.ping},
        after_startup=[consumer.start, flush_loop.start],
        on_shutdown=[consumer.stop, flush_loop.stop],
        after_shutdown=[redis.aclose],
    )


def specification_broker() -> RabbitBroker:
    """A broker that declares debounce's input and output, for its AsyncAPI document (the running service
    consumes through its `MessageConsumer`)."""
    return declaring_broker(DebounceSettings(), declare_input, declare_output)


def main() -> None:
    settings = DebounceSettings()
    app = create_app(settings)
    require_durable_redis(settings)
    serve(app, settings)
