"""CI tests against the RabbitMQ that compose.yaml runs and the chart's values document."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_one_rabbitmq_version_everywhere() -> None:
    ci = re.findall(r"image: rabbitmq:(\d+\.\d+)", (REPO / ".github/workflows/ci.yml").read_text())
    compose = re.findall(r"image: rabbitmq:(\d+\.\d+)", (REPO / "compose.yaml").read_text())
    chart = re.findall(r"RabbitMQ (\d+\.\d+)", (REPO / "charts/papo/values.yaml").read_text())
    assert ci and compose and chart
    assert set(ci) == set(compose) == set(chart), (ci, compose, chart)
