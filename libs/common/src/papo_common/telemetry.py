"""OpenTelemetry tracing, set up once per process. OTLP export is on when the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) variable is set, and off otherwise."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_provider: TracerProvider | None = None


def setup_tracing(
    service: str, *, track: str = "stable", processor: SpanProcessor | None = None
) -> TracerProvider:
    """Create (once) and install this process's tracer provider for `papo-<service>`.

    `processor` lets tests collect spans in memory.
    """
    global _provider  # noqa: PLW0603 - one provider per process is the OpenTelemetry model
    if _provider is None:
        resource = Resource.create(
            {"service.name": f"papo-{service}", "service.namespace": "papo", "papo.track": track}
        )
        _provider = TracerProvider(resource=resource)
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(_provider)
    if processor is not None:
        _provider.add_span_processor(processor)
    return _provider


def exporting_traces() -> bool:
    """Whether an OTLP endpoint is configured. Without one, spans reach nobody: don't create them."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracer(name: str) -> trace.Tracer:
    """A tracer from papo's provider (falls back to the global one before setup)."""
    return (_provider or trace.get_tracer_provider()).get_tracer(name)
