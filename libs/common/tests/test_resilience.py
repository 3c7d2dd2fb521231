"""The retry policy, the circuit breaker and the redelivery plan: pure logic, no network."""

from __future__ import annotations

import pytest

from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.resilience import (
    FIRST_FAILED_HEADER,
    REDELIVERIES_HEADER,
    CircuitBreaker,
    CircuitOpen,
    redelivery_plan,
    retry_transient,
)
from papo_common.topology import LLM


class Flaky(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("flaky")
        self.retry_after = retry_after


class Script:
    """Fails with the given exceptions in turn, then answers."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


async def test_transient_failures_are_retried_until_one_succeeds() -> None:
    sleeps = Sleeps()
    call = Script(Flaky(), Flaky())
    policy = retry_transient(attempts=4, max_wait=10, transient=(Flaky,), sleep=sleeps)
    assert await policy(call) == "ok"
    assert call.calls == 3
    assert len(sleeps.pauses) == 2


async def test_exhausted_transient_failures_become_dependency_unavailable() -> None:
    call = Script(Flaky(), Flaky(), Flaky())
    policy = retry_transient(attempts=3, max_wait=1, transient=(Flaky,), sleep=Sleeps())
    with pytest.raises(DependencyUnavailable) as raised:
        await policy(call)
    assert isinstance(raised.value.__cause__, Flaky)
    assert not isinstance(raised.value, PermanentError)
    assert call.calls == 3


async def test_a_permanent_failure_passes_through_at_once() -> None:
    call = Script(PermanentError("400 invalid request"))
    policy = retry_transient(attempts=5, max_wait=1, transient=(Flaky,), sleep=Sleeps())
    with pytest.raises(PermanentError):
        await policy(call)
    assert call.calls == 1


async def test_waits_are_full_jitter_capped_and_honour_a_retry_after_hint() -> None:
    sleeps = Sleeps()
    call = Script(Flaky(), Flaky(retry_after=7.0), Flaky(retry_after=99.0), Flaky(), Flaky())
    policy = retry_transient(
        attempts=6,
        base_wait=0.5,
        max_wait=8.0,
        transient=(Flaky,),
        retry_after=lambda error: getattr(error, "retry_after", None),
        sleep=sleeps,
    )
    assert await policy(call) == "ok"
    first, hinted, over_cap, fourth, fifth = sleeps.pauses
    assert 0 <= first <= 1.0
    assert hinted == pytest.approx(7.0, abs=1.0) and hinted >= 7.0
    assert over_cap == 8.0
    assert 0 <= fourth <= 8.0 and 0 <= fifth <= 8.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_circuit_opens_after_consecutive_failures_and_lets_one_trial_through_after_the_cool_down() -> (
    None
):
    clock = Clock()
    breaker = CircuitBreaker("model", threshold=3, cool_down=30, clock=clock)
    for _ in range(2):
        breaker.check()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.check()
    breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.now += 30
    assert breaker.state == "half-open"
    breaker.check()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.check()  # only one trial at a time
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 30
    breaker.check()
    breaker.record_success()
    assert breaker.state == "closed"


async def test_the_circuit_readiness_check_fails_while_open() -> None:
    clock = Clock()
    breaker = CircuitBreaker("model", threshold=1, cool_down=10, clock=clock)
    await breaker.readiness()
    with pytest.raises(Flaky), breaker.guard((Flaky,)):
        raise Flaky()
    with pytest.raises(CircuitOpen):
        await breaker.readiness()
    with pytest.raises(CircuitOpen), breaker.guard((Flaky,)):
        pass


def test_a_permanent_answer_does_not_open_the_circuit() -> None:
    breaker = CircuitBreaker("model", threshold=1, clock=Clock())
    with pytest.raises(PermanentError), breaker.guard((Flaky,)):
        raise PermanentError("401")
    assert breaker.state == "closed"


def test_redeliveries_climb_the_delay_ladder_and_stop_at_the_horizon() -> None:
    headers: dict[str, object] = {"traceparent": "00-abc", "x-death": [{"count": 1}], "x-delivery-count": 2}
    now = 5000.0
    seen = []
    while (plan := redelivery_plan(LLM, headers, now=now, horizon_seconds=1800)) is not None:
        seen.append(plan.delay_seconds)
        assert plan.queue == LLM.retry_queue_name(plan.delay_seconds)
        assert "x-death" not in plan.headers and "x-delivery-count" not in plan.headers
        assert plan.headers["traceparent"] == "00-abc"
        assert plan.headers[FIRST_FAILED_HEADER] == 5_000_000
        headers = plan.headers
        now += plan.delay_seconds
    assert seen[: len(LLM.retry_delays_seconds)] == list(LLM.retry_delays_seconds)
    assert set(seen[len(LLM.retry_delays_seconds) :]) == {LLM.retry_delays_seconds[-1]}
    assert sum(seen) >= 1800 - LLM.retry_delays_seconds[-1]
    assert headers[REDELIVERIES_HEADER] == len(seen)


def test_every_retry_queue_dead_letters_back_into_its_service_queue_only() -> None:
    for queue in LLM.retry_queues:
        arguments = queue.arguments or {}
        assert arguments["x-dead-letter-exchange"] == ""
        assert arguments["x-dead-letter-routing-key"] == LLM.name
        assert arguments["x-message-ttl"] > 0
