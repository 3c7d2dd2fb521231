"""Resilience primitives, written once: a retry policy, a lease, a circuit breaker, redelivery with backoff.

The rule every service follows:
- a transient failure (a dependency timing out, refusing, answering 5xx or 429) is retried in the handler a
  few times with exponential backoff and full jitter (`retry_transient`);
- when those attempts are exhausted it becomes `DependencyUnavailable`, and the message is redelivered with
  backoff by the broker (`RedeliveryMiddleware`), up to a horizon (`PAPO_REDELIVERY_HORIZON_SECONDS`, 30 min);
- a permanent failure (`PermanentError`) passes through untouched and dead-letters at once.

Redelivery does not nack: every requeue of a quorum queue counts toward its `x-delivery-limit`, which would
dead-letter a message after a few seconds of outage. Instead the message is copied (confirmed) into one of
its service's retry queues (`ServiceQueue.retry_queues`: a fixed TTL each, dead-lettering back into the
service's queue), and the original is then acked. Fixed TTLs per queue keep expiry first-in first-out (a
per-message TTL only expires at the head of a queue). Headers count the redeliveries and remember when the
first failure happened; past the horizon the message is rejected into the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import redis.exceptions
from faststream._internal.middlewares import BaseMiddleware
from faststream.exceptions import RejectMessage
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    stop_never,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.topology import ServiceQueue

if TYPE_CHECKING:
    from faststream.message import StreamMessage
    from faststream.rabbit import RabbitBroker

logger = logging.getLogger(__name__)

__all__ = [
    "OUTAGES",
    "CircuitBreaker",
    "CircuitOpen",
    "DependencyUnavailable",
    "Lease",
    "LeaseBusy",
    "LeaseLost",
    "PermanentError",
    "RedeliveryMiddleware",
    "hold_lease",
    "redelivery_plan",
    "retry_transient",
]

OUTAGES: Final[tuple[type[BaseException], ...]] = (
    DependencyUnavailable,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
)
"""What means "a dependency is down, try again later" when a handler raises it."""

FIRST_FAILED_HEADER: Final = "x-papo-first-failed-at-ms"
"""Epoch milliseconds of the first dependency failure of a message."""
REDELIVERIES_HEADER: Final = "x-papo-redeliveries"
_BROKER_HEADERS: Final = ("x-death", "x-first-death", "x-last-death", "x-delivery-count")

Sleep = Callable[[float], Awaitable[None]]


# -- retries ---------------------------------------------------------------------------------------------


def retry_transient(
    *,
    attempts: int | None,
    max_wait: float,
    base_wait: float = 0.5,
    transient: tuple[type[BaseException], ...] = OUTAGES,
    retry_after: Callable[[BaseException], float | None] | None = None,
    what: str = "call",
    sleep: Sleep = asyncio.sleep,
    stop_when: Callable[[], bool] | None = None,
    on_retry: Callable[[], None] | None = None,
) -> AsyncRetrying:
    """A tenacity policy: `transient` failures are retried up to `attempts` tries in all, waiting with full
    jitter (uniform between 0 and `base_wait * 2**n`, capped at `max_wait`) or, when `retry_after` reads a
    server's hint from the failure, at least that (still capped). Exhausted transient failures raise
    `DependencyUnavailable` (chained to the last one), which means redelivery; anything else, a
    `PermanentError` included, passes through at once.

    With `attempts=None` an outage is ridden out for as long as it lasts, until `stop_when()` says to give
    up (a stop: the work is left unacknowledged for redelivery). `on_retry` runs before each wait.

    Use it as `async for attempt in retry_transient(...): with attempt: ...` or `await policy(fn, *args)`.
    """
    jitter = wait_random_exponential(multiplier=base_wait, max=max_wait)

    def wait(state: RetryCallState) -> float:
        pause = jitter(state)
        failure = state.outcome.exception() if state.outcome else None
        hint = retry_after(failure) if retry_after is not None and failure is not None else None
        return min(max_wait, max(pause, hint)) if hint is not None else pause

    def give_up(state: RetryCallState) -> Any:
        failure = state.outcome.exception() if state.outcome else None
        raise DependencyUnavailable(
            f"{what}: {type(failure).__name__} after {state.attempt_number} attempts"
        ) from failure

    def log_retry(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry()
        failure = state.outcome.exception() if state.outcome else None
        logger.warning(
            "transient failure, retrying",
            extra={
                "what": what,
                "attempt": state.attempt_number,
                "error": type(failure).__name__,
                "retry_in_s": round(state.upcoming_sleep, 3),
            },
        )

    stop: stop_base = stop_never if attempts is None else stop_after_attempt(attempts)
    if stop_when is not None:
        stop = stop_any(stop, _StopWhen(stop_when))
    return AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=wait,
        retry=retry_if_exception_type(transient),
        before_sleep=log_retry,
        retry_error_callback=give_up,
    )


class _StopWhen(stop_base):
    def __init__(self, predicate: Callable[[], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._predicate()


# -- leases ----------------------------------------------------------------------------------------------


class LeaseBusy(DependencyUnavailable):
    """Someone else held the lease for the whole wait: try again later (redelivery with backoff)."""


class LeaseLost(DependencyUnavailable):
    """The lease lapsed while held (Redis unreachable, or the process stalled past it), so someone else may
    hold it now: whatever the holder was about to do must not happen; try again later."""


_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


class RetrySafeLock(Lock):
    """redis-py's `Lock`, with an acquire that survives redis-py's own retry.

    papo's clients send a command again when its connection broke (`papo_common.redis.make_redis`), not
    knowing whether Redis ran it. The `Lock`'s `SET NX` is not safe to repeat: when Redis set the key but the answer was lost
    with the connection, the retry finds the key taken (by this very token), the acquire fails, and the
    lease stays held by nobody until its TTL ends, holding the conversation back that long. This acquire
    counts its own token as success, so a repeat answers what the first try did."""

    _acquire_script: Any = None
    """Registered once, as redis-py registers the `Lock`'s own scripts, and run on each lock's client: a lock
    is made per turn and per reply, and registering hashes the script each time."""

    def __init__(self, redis: Redis, name: str, **options: Any) -> None:
        super().__init__(redis, name, **options)
        if RetrySafeLock._acquire_script is None:
            RetrySafeLock._acquire_script = redis.register_script(_ACQUIRE)

    async def do_acquire(self, token: str | bytes) -> bool:
        lease_ms = int(self.timeout * 1000) if self.timeout else 0
        if not lease_ms:
            return await super().do_acquire(token)
        acquired = await RetrySafeLock._acquire_script(
            keys=[self.name], args=[token, lease_ms], client=self.redis
        )
        return bool(acquired)


class Lease:
    """A held lease: redis-py's token-checked `Lock`, renewed in the background while held."""

    def __init__(
        self,
        lock: Lock,
        lease_seconds: float,
        *,
        set_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = lock
        self._lease_seconds = lease_seconds
        self._lost = False
        self._clock = clock
        self._set_at = clock() if set_at is None else set_at
        """When the lease was last set to its full length, by this process's monotonic clock, taken before the
        command was sent: Redis expires it no earlier than `lease_seconds` after that."""

    @property
    def seconds(self) -> float:
        return self._lease_seconds

    @property
    def name(self) -> str:
        return str(self._lock.name)

    @property
    def token(self) -> bytes:
        """The holder's token: what the lease key holds while the lease is ours (for a pipelined check)."""
        token = self._lock.local.token
        return token if isinstance(token, bytes) else str(token).encode()

    def confirm(self, value: bytes | None) -> None:
        """Raise `LeaseLost` unless `value`, read from the lease key, is our token."""
        if self._lost or value != self.token:
            self._lost = True
            raise LeaseLost("the lease lapsed while held")

    async def ensure_held(self) -> None:
        """Raise `LeaseLost` unless the lease is still ours; check it before an effect that must happen once."""
        if self._lost or not await self._lock.owned():
            self._lost = True
            raise LeaseLost("the lease lapsed while held")

    async def renew(self) -> bool:
        """Reset the lease to its full length; False (and lost for good) when it is no longer ours."""
        asked_at = self._clock()
        try:
            await self._lock.extend(self._lease_seconds, replace_ttl=True)
        except redis.exceptions.LockNotOwnedError:
            self._lost = True
        if not self._lost:
            self._set_at = asked_at
        return not self._lost

    async def renew_if_older_than(self, seconds: float) -> bool:
        """`renew`, unless the lease was set less than `seconds` ago: then it has at least `lease - seconds`
        left and is still ours (only its holder's token can set it), and no round trip is needed."""
        if not self._lost and self._clock() - self._set_at < seconds:
            return True
        return await self.renew()

    async def keep_alive(self) -> None:
        """Renew every third of the lease until cancelled; a Redis hiccup is retried on the next beat."""
        while not self._lost:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                if not await self.renew():
                    logger.error("lease lost while held")
            except redis.exceptions.RedisError as error:
                logger.warning("could not renew a lease", extra={"error": type(error).__name__})

    async def release(self) -> None:
        """Give the lease back (only if still ours). A failure is only logged: the lease lapses by itself."""
        try:
            await self._lock.release()
        except redis.exceptions.LockError:
            pass
        except redis.exceptions.RedisError as error:
            logger.warning("could not release a lease", extra={"error": type(error).__name__})


@contextlib.asynccontextmanager
async def hold_lease(
    redis_client: Redis,
    key: str,
    *,
    lease_seconds: float,
    wait_seconds: float,
    poll_seconds: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    lock_class: Callable[..., RetrySafeLock] = RetrySafeLock,
) -> AsyncIterator[Lease]:
    """Hold the lease `key` for the block: wait up to `wait_seconds` for it (else `LeaseBusy`), renew it
    while held, release it after, whatever happens. Only the holder's token can renew or release it.
    `clock` (monotonic seconds) dates the lease for `Lease.renew_if_older_than`; `lock_class` makes the lock,
    with redis-py `Lock`'s arguments (a subclass may take the lease on conditions of its own)."""
    lock = lock_class(
        redis_client,
        key,
        timeout=lease_seconds,
        sleep=poll_seconds,
        blocking_timeout=wait_seconds,
        thread_local=False,
    )
    asked_at = clock()
    # redis-py's own token is a uuid1: 20 µs to make, and it carries the host's MAC address into Redis
    if not await lock.acquire(token=os.urandom(16).hex()):
        raise LeaseBusy("the lease stayed held by another holder")
    lease = Lease(lock, lease_seconds, set_at=asked_at, clock=clock)
    keeper = asyncio.create_task(lease.keep_alive())
    try:
        yield lease
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await lease.release()


# -- circuit breaker -------------------------------------------------------------------------------------


class CircuitOpen(DependencyUnavailable):
    """The dependency failed too often lately: calls are refused without trying, until the cool-down ends."""


class CircuitBreaker:
    """Stops calling a dependency that keeps failing. After `threshold` transient failures in a row the
    circuit opens for `cool_down` seconds: `check()` raises `CircuitOpen` without trying. Then one trial
    call is let through (half-open); its success closes the circuit, its failure opens it again."""

    def __init__(
        self,
        name: str,
        *,
        threshold: int = 5,
        cool_down: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = threshold
        self._cool_down = cool_down
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        """`closed`, `open` or `half-open`."""
        if self._opened_at is None:
            return "closed"
        return "open" if self._clock() - self._opened_at < self._cool_down else "half-open"

    def check(self) -> None:
        """Raise `CircuitOpen` when a call must not be tried now."""
        state = self.state
        if state == "open" or (state == "half-open" and self._trial_running):
            raise CircuitOpen(f"{self.name}: circuit open after {self._failures} failures")
        self._trial_running = state == "half-open"

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_running = False
        if self._failures >= self._threshold or self._opened_at is not None:
            self._opened_at = self._clock()

    async def readiness(self) -> None:
        """A readiness check: fails while the circuit is open."""
        if self.state == "open":
            raise CircuitOpen(f"{self.name}: circuit open after {self._failures} failures")

    @contextlib.contextmanager
    def guard(self, transient: tuple[type[BaseException], ...] = OUTAGES) -> Any:
        """`with breaker.guard(): ...`: checks the circuit, and records the block's outcome (only
        `transient` failures count; a permanent answer means the dependency is up)."""
        self.check()
        try:
            yield
        except transient:
            self.record_failure()
            raise
        except BaseException:
            self.record_success()
            raise
        self.record_success()


# -- redelivery with backoff -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Redelivery:
    """Where a failed message goes next: the retry queue to wait in, and the headers it carries there."""

    queue: str
    delay_seconds: float
    headers: dict[str, Any]


def redelivery_plan(
    service_queue: ServiceQueue, headers: Mapping[str, Any], *, now: float, horizon_seconds: float
) -> Redelivery | None:
    """The next redelivery of a message that failed with a dependency outage, or None once the first such
    failure is `horizon_seconds` old (the message then dead-letters). The n-th redelivery waits in the n-th
    retry queue (the last one repeats)."""
    # milliseconds as an integer: AMQP tables may carry floats as 32 bits, far too coarse for epoch seconds
    now_ms = int(now * 1000)
    first_failed_ms = int(headers.get(FIRST_FAILED_HEADER) or now_ms)
    if now_ms - first_failed_ms >= horizon_seconds * 1000:
        return None
    done = int(headers.get(REDELIVERIES_HEADER) or 0)
    delays = service_queue.retry_delays_seconds
    delay = delays[min(done, len(delays) - 1)]
    kept = {name: value for name, value in headers.items() if name not in _BROKER_HEADERS}
    kept |= {FIRST_FAILED_HEADER: first_failed_ms, REDELIVERIES_HEADER: done + 1}
    return Redelivery(queue=service_queue.retry_queue_name(delay), delay_seconds=delay, headers=kept)


def log_past_horizon(queue: str, error: BaseException) -> None:
    logger.warning(
        "dependency unavailable past the redelivery horizon: dead-lettering",
        extra={"queue": queue, "error": type(error).__name__},
    )


def log_redelivery(queue: str, error: BaseException, plan: Redelivery) -> None:
    logger.warning(
        "dependency unavailable: redelivering later",
        extra={
            "queue": queue,
            "error": type(error).__name__,
            "reason": str(error)[:200],
            "redelivery": plan.headers[REDELIVERIES_HEADER],
            "retry_in_s": plan.delay_seconds,
        },
    )


class RedeliveryMiddleware(BaseMiddleware):
    """Turns a handler's `DependencyUnavailable` (or another of `OUTAGES`) into a delayed redelivery: a
    confirmed copy in the service's retry queue, then an ack of the original. Past the horizon the message is
    rejected into its dead-letter queue. Install with `redelivery_middleware(broker, queues, horizon)`."""

    broker: RabbitBroker
    queues: dict[str, ServiceQueue]
    horizon_seconds: float
    clock: Callable[[], float] = time.time

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        try:
            return await call_next(msg)
        except OUTAGES as error:
            service_queue = self.queues.get(_queue_of(self.context))
            if service_queue is None:
                raise
            plan = redelivery_plan(
                service_queue, msg.headers or {}, now=self.clock(), horizon_seconds=self.horizon_seconds
            )
            if plan is None:
                log_past_horizon(service_queue.name, error)
                raise RejectMessage from error
            raw = msg.raw_message
            await self.broker.publish(
                msg.body,
                queue=plan.queue,
                persist=True,
                mandatory=True,
                headers=plan.headers,
                content_type=msg.content_type,
                message_id=msg.message_id,
                correlation_id=msg.correlation_id,
                message_type=getattr(raw, "type", None),
            )
            log_redelivery(service_queue.name, error, plan)
            return None


def redelivery_middleware(
    broker: RabbitBroker,
    queues: tuple[ServiceQueue, ...],
    *,
    horizon_seconds: float,
    clock: Callable[[], float] = time.time,
) -> type[RedeliveryMiddleware]:
    """A `RedeliveryMiddleware` bound to `broker` (which publishes the copies) and the service queues it
    may redeliver for; add it with `broker.add_middleware`."""
    return type(
        "BoundRedeliveryMiddleware",
        (RedeliveryMiddleware,),
        {
            "broker": broker,
            "queues": {queue.name: queue for queue in queues},
            "horizon_seconds": horizon_seconds,
            "clock": staticmethod(clock),
        },
    )


def _queue_of(context: Any) -> str:
    handler = context.get("handler_")
    return str(getattr(getattr(handler, "queue", None), "name", ""))
