"""What an operator sees: every service's /metrics during a real conversation, and one trace end to end."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from papo_testing.webhooks import audio_webhook, text_webhook

Stack = Any  # the `stack` fixture of tests/e2e/conftest.py

ROOT = Path(__file__).parents[2]
VOICE_NOTE = ROOT / "tests" / "fixtures" / "audio" / "en_weather.ogg"
METRICS_USED_BY_CHART = ROOT / "charts" / "papo" / "tests" / "metrics-used.txt"
SERVICES = ("ingest", "debounce", "transcribe", "llm", "persist", "deliver")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


async def converse_with_a_voice_note_first(stack: Stack, number: str) -> None:
    now = int(time.time())
    note = base64.b64encode(VOICE_NOTE.read_bytes()).decode()
    webhooks = [
        audio_webhook(stack.instance, f"3EB0V{number[-4:]}", now - 2, base64=note, number=number),
        text_webhook(stack.instance, f"3EB0T{number[-4:]}", "what do you think?", now - 1, number=number),
    ]
    async with httpx.AsyncClient(headers={"x-papo-token": stack.webhook_token}) as client:
        for body in webhooks:
            assert (await client.post(stack.webhook_url(), json=body)).json()["status"] == "accepted"
    deadline = time.monotonic() + 90
    while not [s for s in stack.evolution.sent_texts(stack.instance) if s.number.startswith(number)]:
        assert time.monotonic() < deadline, stack.services.all_logs()[-5000:]
        await asyncio.sleep(0.3)


def exposed_series(text: str) -> set[str]:
    """Every series name a scrape can produce: the samples present, and for each declared family the names
    its samples will have once it has children."""
    names = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        family, kind = kind_line
        names.add(family)
        if kind == "histogram":
            names.update(family + suffix for suffix in HISTOGRAM_SUFFIXES)
        if kind == "counter" and not family.endswith("_total"):
            names.add(family + "_total")
    return names


async def test_one_trace_runs_from_the_webhook_through_all_six_services(stack: Stack) -> None:
    await converse_with_a_voice_note_first(stack, "5511977770001")
    wanted = {f"papo-{service}" for service in SERVICES}
    deadline = time.monotonic() + 20
    while True:
        complete = [
            trace for trace, services in stack.collector.services_by_trace().items() if wanted <= services
        ]
        if complete:
            break
        assert time.monotonic() < deadline, stack.collector.services_by_trace()
        await asyncio.sleep(0.3)


async def test_every_service_exposes_the_metrics_dashboards_and_alerts_query(stack: Stack) -> None:
    await converse_with_a_voice_note_first(stack, "5511977770002")
    scraped: dict[str, set[str]] = {}
    async with httpx.AsyncClient() as client:
        for service in SERVICES:
            answer = await client.get(stack.services.url(service, "/metrics"))
            assert answer.status_code == 200, service
            scraped[service] = exposed_series(answer.text)
    expected_per_service = {
        "ingest": "papo_webhooks_total",
        "debounce": "papo_debounce_burst_messages_bucket",
        "transcribe": "papo_transcription_seconds_bucket",
        "llm": "papo_llm_request_seconds_bucket",
        "persist": "papo_persisted_rows_total",
        "deliver": "papo_replies_total",
    }
    for service, series in expected_per_service.items():
        assert series in scraped[service], f"{service} does not expose {series}"
    for service in ("debounce", "transcribe", "llm", "persist", "deliver"):
        assert "faststream_received_messages_total" in scraped[service], service
    assert "faststream_published_messages_total" in scraped["ingest"]
    assert "litestar_requests_total" in scraped["ingest"], "Litestar's own HTTP metrics"
    everything = set().union(*scraped.values())
    used = {line.strip() for line in METRICS_USED_BY_CHART.read_text().splitlines() if line.strip()}
    missing = sorted(name for name in used if not name.startswith("rabbitmq_") and name not in everything)
    assert missing == [], f"dashboards or alerts query metrics no service exposes: {missing}"


async def test_every_service_froze_its_heap_once_it_had_started(stack: Stack) -> None:
    """Served services keep the collector's oldest generation to what they made since (papo_common.heap)."""
    frozen: dict[str, float] = {}
    async with httpx.AsyncClient() as client:
        for service in SERVICES:
            answer = await client.get(stack.services.url(service, "/metrics"))
            for family in text_string_to_metric_families(answer.text):
                if family.name == "papo_gc_frozen_objects":
                    frozen[service] = family.samples[0].value
    assert set(frozen) == set(SERVICES)
    assert all(objects > 10_000 for objects in frozen.values()), frozen
