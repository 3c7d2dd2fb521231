"""deliver's ASGI app: the consumer of `papo.deliver`, health, readiness and metrics."""

from __future__ import annotations

import httpx
from faststream.asgi import AsgiFastStream
from faststream.rabbit import RabbitBroker
from httpx_aiohttp import AiohttpTransport
from redis.asyncio import Redis

from papo_common.broker import ConfirmedPublisher
from papo_common.evolution import EvolutionClient, RetryPolicy
from papo_common.own_sends import OwnSends
from papo_common.redis import make_redis
from papo_common.redis_durability import require_durable_redis
from papo_common.service import consumer_app, declaring_broker, make_service_broker, serve
from papo_common.topology import DELIVER
from papo_deliver.courtesy import Courtesies, RefusalMemory
from papo_deliver.delivery import ChunkLimits, ReplyDeliverer, ReplyOrder
from papo_deliver.handlers import consume, declare_input, declare_output
from papo_deliver.ledger import DeliveryLedger
from papo_deliver.send_slots import SendSlots
from papo_deliver.sending import TypingPace
from papo_deliver.settings import DeliverSettings


def make_deliverer(settings: DeliverSettings, redis: Redis, http: httpx.AsyncClient) -> ReplyDeliverer:
    """deliver's work, wired from its settings over shared Redis and HTTP clients."""
    prefix = settings.redis_key_prefix
    client = EvolutionClient(
        http, settings.evolution_url, settings.evolution_keys(), settings.evolution_timeout_seconds
    )
    return ReplyDeliverer(
        client,
        DeliveryLedger(redis, prefix, sent_ttl_seconds=settings.deliver_sent_ttl_seconds),
        pace=TypingPace(
            settings.deliver_typing_cps, settings.deliver_typing_min_ms, settings.deliver_typing_max_ms
        ),
        policy=RetryPolicy(
            settings.deliver_retry_attempts,
            settings.deliver_retry_base_seconds,
            settings.deliver_retry_max_seconds,
        ),
        lock_ttl_seconds=settings.deliver_lock_ttl_seconds,
        chunk_limits=ChunkLimits(settings.deliver_max_chunk_chars, settings.deliver_max_chunks),
        slots=SendSlots(redis, prefix, interval_ms=settings.deliver_min_send_interval_ms),
        mark_read=settings.deliver_mark_read,
        courtesies=Courtesies(
            client,
            timeout_seconds=settings.deliver_courtesy_timeout_seconds,
            refusals=RefusalMemory(settings.deliver_refusal_memory_seconds),
        ),
        own_sends=OwnSends(redis, prefix),
        echo_wait_seconds=settings.deliver_echo_wait_seconds,
        order=ReplyOrder(settings.deliver_order_hold_seconds, settings.order_horizon_seconds),
    )


def create_app(settings: DeliverSettings | None = None) -> AsgiFastStream:
    """Build the deliver service. Its clients close after the broker has stopped, so in-flight sends finish."""
    settings = settings or DeliverSettings()
    broker = make_service_broker(DELIVER.service, settings)
    redis = make_redis(settings.redis_url.get_secret_value())
    # Connection pooling is the point of sharing the client; timeouts are set per request because a
    # request's timeout grows with the typing delay Evolution holds it for. httpx's API over aiohttp's
    # transport: a sendText cost 3.0-3.1 ms of CPU through httpx's own pool at 16 in flight, 0.8 ms through
    # aiohttp's (docs/performance.md). The transport maps aiohttp's errors to httpx's, which `classify` reads.
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
    http = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), limits=limits)
    publish_sent = ConfirmedPublisher(broker, declared=declare_output(broker))
    consumer = consume(settings, make_deliverer(settings, redis, http), publish_sent)

    async def redis_ready() -> None:
        await redis.ping()

    async def close() -> None:
        await http.aclose()
        await redis.aclose()

    # The consumer's stop lets the sends in flight finish; the clients close after it, and after the broker
    # that publishes their `reply.sent`.
    return consumer_app(
        broker,
        checks={"redis": redis_ready},
        after_startup=[consumer.start],
        on_shutdown=[consumer.stop],
        after_shutdown=[close],
    )


def specification_broker() -> RabbitBroker:
    """A broker that declares deliver's input and output, for its AsyncAPI document (the running service
    consumes through its `MessageConsumer`)."""
    return declaring_broker(DeliverSettings(), declare_input, declare_output)


def main() -> None:
    settings = DeliverSettings()
    app = create_app(settings)
    require_durable_redis(settings)
    serve(app, settings)
