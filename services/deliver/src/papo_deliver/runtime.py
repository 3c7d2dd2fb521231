"""The process-wide clients deliver works with: one Redis client and one `httpx.AsyncClient`."""

from __future__ import annotations

import httpx

from papo_common.redis import make_redis
from papo_deliver.delivery import ChunkLimits, ReplyDeliverer
from papo_deliver.evolution import ApiKeys, EvolutionClient
from papo_deliver.ledger import DeliveryLedger
from papo_deliver.pacing import TypingPace
from papo_deliver.retry import RetryPolicy
from papo_deliver.send_slots import SendSlots
from papo_deliver.settings import DeliverSettings


class DeliverRuntime:
    """Opened on startup and closed after the broker stopped, so in-flight sends finish with live clients."""

    def __init__(self, settings: DeliverSettings) -> None:
        self.settings = settings
        self.redis = make_redis(settings.redis_url.get_secret_value())
        self._http: httpx.AsyncClient | None = None
        self._deliverer: ReplyDeliverer | None = None

    async def start(self) -> None:
        settings = self.settings
        # Connection pooling is the point of sharing the client; timeouts are set per request because a
        # request's timeout grows with the typing delay Evolution holds it for.
        self._http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
        client = EvolutionClient(
            self._http,
            settings.evolution_url,
            ApiKeys(settings.evolution_api_key, settings.evolution_api_keys),
            settings.evolution_timeout_seconds,
        )
        self._deliverer = ReplyDeliverer(
            client,
            DeliveryLedger(
                self.redis, settings.redis_key_prefix, sent_ttl_seconds=settings.deliver_sent_ttl_seconds
            ),
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
            slots=SendSlots(
                self.redis, settings.redis_key_prefix, interval_ms=settings.deliver_min_send_interval_ms
            ),
            mark_read=settings.deliver_mark_read,
        )

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._deliverer = None
        await self.redis.aclose()

    async def redis_ready(self) -> None:
        await self.redis.ping()

    @property
    def deliverer(self) -> ReplyDeliverer:
        if self._deliverer is None:
            raise RuntimeError("deliver's runtime was not started")
        return self._deliverer
