"""Evolution instances' WhatsApp sessions, from `connection.update`: the shared state in Redis (deliver holds
replies while an instance is closed) and the `papo_instance_connected` gauge.

Each ingest replica sees only the updates posted to it, so the gauge is refreshed from Redis on a timer:
every replica reports the same, latest state.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from papo_common.metrics import INSTANCE_CONNECTED
from papo_common.own_sends import instance_states, set_instance_state
from papo_ingest.evolution import ConnectionUpdate

logger = logging.getLogger(__name__)

OPEN = "open"


class Instances:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def changed(self, update: ConnectionUpdate) -> None:
        """Record an instance's new state; log it when it differs from the last one."""
        previous = await set_instance_state(self._redis, self._prefix, update.instance, update.state)
        INSTANCE_CONNECTED.labels(instance=update.instance).set(1 if update.state == OPEN else 0)
        if previous != update.state:
            log = logger.info if update.state == OPEN else logger.warning
            log(
                "instance connection changed",
                extra={
                    "instance": update.instance,
                    "state": update.state,
                    "previous_state": previous,
                    "status_reason": update.status_reason,
                },
            )

    async def refresh_gauge(self) -> None:
        """Set the gauge of every known instance from Redis."""
        for instance, state in (await instance_states(self._redis, self._prefix)).items():
            INSTANCE_CONNECTED.labels(instance=instance).set(1 if state == OPEN else 0)
