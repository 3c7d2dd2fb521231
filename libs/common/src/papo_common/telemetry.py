"""OpenTelemetry tracing, set up once per process. Tracing is on when the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
(or `..._TRACES_ENDPOINT`) variable is set, or a test adds a span processor; off otherwise, and then it costs
nothing: no span is recorded, and `make_service_broker` installs no tracing middleware at all.

When on, traces are sampled by their root: `ParentBased(TraceIdRatioBased(ratio))`, the ratio from the standard
`OTEL_TRACES_SAMPLER_ARG` (default 1.0), so a downstream service keeps or drops a trace as its caller did.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, SpanKind
    from opentelemetry.util.types import Attributes

_provider: TracerProvider | None = None


def tracing_enabled() -> bool:
    """Whether this process exports traces (an OTLP endpoint is configured)."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def sample_ratio() -> float:
    """The share of root traces kept while tracing is on, from `OTEL_TRACES_SAMPLER_ARG` (0 to 1)."""
    raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(raw) if raw else 1.0
    except ValueError as error:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG must be a number between 0 and 1, not {raw!r}") from error
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG must be between 0 and 1, not {ratio}")
    return ratio


class _SwitchedSampler(Sampler):
    """Drops every span until something will receive them; then samples as `ParentBased(TraceIdRatio)`."""

    def __init__(self, ratio: float) -> None:
        self._on: Sampler = ParentBased(TraceIdRatioBased(ratio))
        self.recording = False

    def should_sample(  # noqa: PLR0917 - the SDK's signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if not self.recording:
            return SamplingResult(Decision.DROP)
        return self._on.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"Switched({self._on.get_description()})" if self.recording else "AlwaysOff"


def setup_tracing(
    service: str, *, track: str = "stable", processor: SpanProcessor | None = None
) -> TracerProvider:
    """Create (once) and install this process's tracer provider for `papo-<service>`.

    `processor` lets tests collect spans in memory; adding one turns recording on.
    """
    global _provider  # noqa: PLW0603 - one provider per process is the OpenTelemetry model
    if _provider is None:
        resource = Resource.create(
            {"service.name": f"papo-{service}", "service.namespace": "papo", "papo.track": track}
        )
        _provider = TracerProvider(resource=resource, sampler=_SwitchedSampler(sample_ratio()))
        if tracing_enabled():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            _switch_on(_provider)
        trace.set_tracer_provider(_provider)
    if processor is not None:
        _provider.add_span_processor(processor)
        _switch_on(_provider)
    return _provider


def _switch_on(provider: TracerProvider) -> None:
    sampler = provider.sampler
    if isinstance(sampler, _SwitchedSampler):
        sampler.recording = True


def recording() -> bool:
    """Whether papo's spans are kept (an exporter or a test's processor is installed). While they are not, a
    hot path skips its span altogether: a dropped span still costs its creation and context switch."""
    return _provider is not None and getattr(_provider.sampler, "recording", False) is True


def tracer(name: str) -> trace.Tracer:
    """A tracer from papo's provider (falls back to the global one before setup)."""
    return (_provider or trace.get_tracer_provider()).get_tracer(name)
