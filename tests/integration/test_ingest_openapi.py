"""schemathesis against ingest's published OpenAPI document: every operation, webhook and admin, fed what the
document allows, over the real RabbitMQ, Redis and PostgreSQL; no 5xx, and every answer as documented."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import ignored_auth, positive_data_acceptance

from papo_ingest.app import create_app

from .test_admin import ADMIN, ADMIN_TOKEN, admin_settings
from .test_ingest import free_port

EXAMPLES_PER_OPERATION = 40


@pytest.fixture
def ingest_url(rabbitmq_url: str, redis_url: str, redis_prefix: str, database_url: str) -> Iterator[str]:
    import uvicorn

    app = create_app(admin_settings(rabbitmq_url, redis_url, redis_prefix, database_url))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, name="ingest-under-schemathesis", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not (server.started and httpx.get(f"{url}/readyz", timeout=5).status_code == 200):
        assert thread.is_alive() and time.monotonic() < deadline, "ingest did not become ready"
        time.sleep(0.05)  # polling a server in another thread for readiness, not waiting out a race
    # the admin API's own RabbitMQ connection opens on first use, which a loaded broker may take seconds to
    # accept (answered 503, rightly): open it before the run
    while (
        httpx.get(f"{url}/admin/dead-letters?queue=papo.llm.dlq", headers=ADMIN, timeout=30).status_code
        != 200
    ):
        assert time.monotonic() < deadline + 30, "the admin API never reached RabbitMQ"
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


def test_every_operation_answers_as_documented(ingest_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{ingest_url}/schema/openapi.json")
    webhook_auth = {"x-papo-token": "webhook-integration-" + "w" * 40}
    admin_auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.path for operation in operations} >= {
        "/webhook/evolution",
        "/webhook/evolution/{event}",
        "/admin/dead-letters/replay",
        "/admin/instances/{instance}/conversations/{user_id}/messages",
    }
    for operation in operations:
        # ignored_auth takes the real token for one schemathesis made up (forged credentials are tested in
        # test_auth.py and test_admin.py); a history cursor is opaque, so a made-up one is rightly a 400; and
        # Litestar's document loses `minItems` of replay's optional `message_ids`, so `[]` looks valid there
        excluded = [ignored_auth]
        if operation.path.endswith(("/messages", "/replay")):
            excluded.append(positive_data_acceptance)
        auth = admin_auth if operation.path.startswith("/admin") else webhook_auth
        fuzz(operation, ingest_url, auth, excluded)


def fuzz(operation: Any, url: str, auth: dict[str, str], excluded: list[Any]) -> None:
    """Hypothesis over one operation: what the document allows, checked against what it promises."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, headers=auth, timeout=30)
        case.validate_response(response, excluded_checks=excluded)

    answers_as_documented()
