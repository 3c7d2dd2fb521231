"""Every papo metric, in one registry and one place. Names share the `papo_` prefix.

FastStream's own broker metrics (received/published/errors/latency per queue, prefixed `faststream_`) and
Litestar's HTTP metrics are registered into the same registry by the service apps. The canary/stable split
comes from the pod's `track` label, added at scrape time, so no metric here carries it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOKS = Counter(
    "papo_webhooks",
    "Evolution API webhooks received, by outcome (accepted, duplicate, ignored, rejected, unavailable).",
    ["outcome", "reason"],
    registry=REGISTRY,
)
INSTANCE_CONNECTED = Gauge(
    "papo_instance_connected",
    "1 while the Evolution instance's WhatsApp session is open, 0 while connecting or closed (connection.update).",
    ["instance"],
    registry=REGISTRY,
)
DEBOUNCE_BURST_MESSAGES = Histogram(
    "papo_debounce_burst_messages",
    "Messages in a flushed burst.",
    ["reason"],
    buckets=(1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50),
    registry=REGISTRY,
)
DEBOUNCE_SKIPPED = Counter(
    "papo_debounce_skipped",
    "Inbound messages recorded but not answered, by reason (paused, stale, operator).",
    ["reason"],
    registry=REGISTRY,
)
DEBOUNCE_WAIT_SECONDS = Histogram(
    "papo_debounce_wait_seconds",
    "Seconds from a burst's first message to its flush.",
    ["reason"],
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300),
    registry=REGISTRY,
)
TRANSCRIPTION_SECONDS = Histogram(
    "papo_transcription_seconds",
    "Wall seconds spent transcribing one voice note.",
    ["engine"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
    registry=REGISTRY,
)
TRANSCRIPTION_AUDIO_SECONDS = Counter(
    "papo_transcription_audio_seconds",
    "Seconds of audio transcribed.",
    ["engine"],
    registry=REGISTRY,
)
TRANSCRIPTIONS = Counter(
    "papo_transcriptions",
    "Voice notes handled, by outcome (ok, failed).",
    ["engine", "outcome"],
    registry=REGISTRY,
)
LLM_REQUEST_SECONDS = Histogram(
    "papo_llm_request_seconds",
    "Latency of one chat completion, including retries.",
    ["model", "outcome"],
    buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "papo_llm_tokens",
    "Tokens used by chat completions, by kind (prompt, completion).",
    ["model", "kind"],
    registry=REGISTRY,
)
LLM_TURNS = Counter(
    "papo_llm_turns",
    "Bursts handled by the llm, by outcome (answered, superseded, duplicate, failed).",
    ["outcome"],
    registry=REGISTRY,
)
REPLIES = Counter(
    "papo_replies",
    "Replies handed to Evolution API, by instance and outcome (sent, failed, duplicate, withheld, held).",
    ["instance", "outcome"],
    registry=REGISTRY,
)
DELIVER_COURTESIES_SKIPPED = Counter(
    "papo_deliver_courtesies_skipped",
    "Typing indicators and read receipts not shown, by instance, call (sendPresence, markMessageAsRead) and "
    "reason (unsupported: the channel refuses it; failed: any other failure). The reply went out regardless.",
    ["instance", "call", "reason"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "papo_dead_letters",
    "Messages sent to a dead-letter queue by papo's handlers, by queue and reason.",
    ["queue", "reason"],
    registry=REGISTRY,
)
PERSISTED_ROWS = Counter(
    "papo_persisted_rows",
    "Rows written to PostgreSQL, by kind (inbound, operator, reply, transcript, delivery).",
    ["kind"],
    registry=REGISTRY,
)
GC_PAUSE_SECONDS = Histogram(
    "papo_gc_pause_seconds",
    "Garbage-collector pauses of a served process, by generation (the event loop stands still meanwhile).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
GC_FROZEN_OBJECTS = Gauge(
    "papo_gc_frozen_objects",
    "Objects a served process moved into the collector's permanent generation once it had started.",
    registry=REGISTRY,
)

METRIC_NAMES: tuple[str, ...] = tuple(
    sorted(
        {
            next(iter(metric.describe())).name
            for metric in (
                WEBHOOKS,
                DEBOUNCE_BURST_MESSAGES,
                DEBOUNCE_SKIPPED,
                DEBOUNCE_WAIT_SECONDS,
                TRANSCRIPTION_SECONDS,
                TRANSCRIPTION_AUDIO_SECONDS,
                TRANSCRIPTIONS,
                LLM_REQUEST_SECONDS,
                LLM_TOKENS,
                LLM_TURNS,
                REPLIES,
                DEAD_LETTERS,
                PERSISTED_ROWS,
                GC_PAUSE_SECONDS,
                GC_FROZEN_OBJECTS,
            )
        }
    )
)
"""papo's own metric families, as Prometheus exposes them (counters gain `_total` on scrape)."""
