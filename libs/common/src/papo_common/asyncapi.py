"""Each consumer service's AsyncAPI document, written to `docs/asyncapi/` and checked for drift by the tests.

The document describes what a service consumes: its queue and the contracts it accepts. What it publishes is
listed by routing key in `topology.py` (publishes go through `broker.publish` with a key chosen per message).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from faststream.specification import AsyncAPI

CONSUMERS = ("debounce", "transcribe", "llm", "persist", "deliver")


def render(service: str) -> str:
    """The AsyncAPI 3.0 document of one consumer service, independent of where its broker points."""
    module: Any = importlib.import_module(f"papo_{service}.app")
    # a service that consumes outside FastStream declares its input on a broker of its own
    broker = module.specification_broker() if hasattr(module, "specification_broker") else None
    document = AsyncAPI(
        broker or module.create_app().brokers[0], title=f"papo-{service}", schema_version="3.0.0"
    )
    jsonable = document.to_specification().to_jsonable()
    jsonable["servers"] = {"rabbitmq": {"host": "rabbitmq:5672", "pathname": "/", "protocol": "amqp"}}
    text = json.dumps(jsonable, indent=2, sort_keys=True)
    text = text.replace('"#/servers/development"', '"#/servers/rabbitmq"')
    return re.sub(r'"vhost": "[^"]*"', '"vhost": "/"', text) + "\n"


def write(folder: Path, services: tuple[str, ...] = CONSUMERS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for service in services:
        (folder / f"{service}.json").write_text(render(service))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/asyncapi"))
