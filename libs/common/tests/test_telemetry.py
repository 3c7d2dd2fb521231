"""Tracing costs nothing while no exporter is configured, and samples by the root when one is."""

from __future__ import annotations

import pytest
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from opentelemetry.sdk.trace.sampling import Decision

from papo_common import telemetry
from papo_common.service import make_service_broker
from papo_common.settings import PapoSettings


@pytest.fixture(autouse=True)
def no_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_SAMPLER_ARG",
    ):
        monkeypatch.delenv(name, raising=False)


def test_without_an_exporter_no_broker_gets_the_tracing_middleware() -> None:
    broker = make_service_broker("telemetry-test", PapoSettings())

    assert not any(isinstance(middleware, RabbitTelemetryMiddleware) for middleware in broker.middlewares)


def test_with_an_exporter_the_broker_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.invalid:4318")

    broker = make_service_broker("telemetry-test", PapoSettings())

    assert any(isinstance(middleware, RabbitTelemetryMiddleware) for middleware in broker.middlewares)


def test_an_empty_endpoint_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")

    assert not telemetry.tracing_enabled()


def test_spans_are_dropped_until_something_receives_them_then_sampled_by_ratio() -> None:
    sampler = telemetry._SwitchedSampler(0.0)
    assert sampler.should_sample(None, trace_id=1, name="span").decision is Decision.DROP

    sampler.recording = True
    assert sampler.should_sample(None, trace_id=1, name="span").decision is Decision.DROP, "ratio 0"
    assert telemetry._SwitchedSampler(1.0).should_sample(None, 1, "span").decision is Decision.DROP
    always = telemetry._SwitchedSampler(1.0)
    always.recording = True
    assert always.should_sample(None, trace_id=1, name="span").decision is Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize(("raw", "ratio"), [("", 1.0), ("0.25", 0.25), ("1", 1.0), ("0", 0.0)])
def test_the_sampling_ratio_comes_from_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, ratio: float
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", raw)

    assert telemetry.sample_ratio() == ratio


@pytest.mark.parametrize("raw", ["half", "1.5", "-0.1"])
def test_a_sampling_ratio_outside_0_to_1_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", raw)

    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER_ARG"):
        telemetry.sample_ratio()
