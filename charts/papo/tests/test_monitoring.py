"""Dashboards and alerts: valid JSON and PromQL, metric names that papo, FastStream and RabbitMQ really
expose, alert rules that promtool accepts and that fire (and stay quiet) as intended, and monitoring objects
that match the prometheus-operator schemas.

metrics-used.txt lists every metric name the dashboards and alerts query, one a line, so that a test against
a live /metrics scrape can read it. Regenerate it with `python charts/papo/tests/test_monitoring.py`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[1]
REPO = CHART.parents[1]
TESTS = CHART / "tests"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
METRICS_USED = TESTS / "metrics-used.txt"
MONITORING = (
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
)
RABBITMQ_METRICS = {"rabbitmq_queue_messages_ready"}
# Grafana's variables, replaced by sample values so that promtool can parse a dashboard's queries.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "1h",
    "$__interval": "1m",
    "$namespace": ".*",
    "$service": "llm",
}
_PROMQL_WORDS = """
    sum min max avg count stddev stdvar topk bottomk quantile count_values group limitk limit_ratio
    by without on ignoring group_left group_right bool and or unless offset atan2
    abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min count_over_time
    day_of_month day_of_week days_in_month delta deriv exp floor histogram_quantile histogram_count histogram_sum
    holt_winters hour idelta increase irate label_join label_replace ln log2 log10 last_over_time max_over_time
    min_over_time minute month predict_linear present_over_time quantile_over_time rate resets round scalar sgn
    sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time time timestamp vector year
"""
# Aggregations, keywords, set operators and functions: what is left of an expression once they are gone is
# metric names.
PROMQL_WORDS = frozenset(_PROMQL_WORDS.split())


def dashboard_queries() -> list[tuple[str, str]]:
    """(dashboard file, expr) of every panel target."""
    queries = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            queries += [(path.name, target["expr"]) for target in panel.get("targets", [])]
    return queries


def rule_exprs(objects: list[dict[str, Any]]) -> list[str]:
    return [
        rule["expr"]
        for obj in objects
        if obj["kind"] == "PrometheusRule"
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, strings, ranges and grouping lists
    stripped; what is left that is not a PromQL word is a metric)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set(re.findall(r"(?<![\w.$])[A-Za-z_:][\w:]*", text))
    return names - PROMQL_WORDS


def known_metrics() -> dict[str, str]:
    """Every series name papo's registry and FastStream's Prometheus middleware can expose, with its owner."""
    from faststream.prometheus.container import MetricsContainer
    from prometheus_client import CollectorRegistry

    from papo_common.metrics import REGISTRY

    faststream = CollectorRegistry()
    MetricsContainer(faststream, custom_label_names=())
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    known = {}
    for owner, registry in (("papo", REGISTRY), ("faststream", faststream)):
        for family in registry.collect():
            for suffix in suffixes[family.type]:
                known[family.name + suffix] = owner
    return known | dict.fromkeys(RABBITMQ_METRICS, "rabbitmq")


def used_metrics(objects: list[dict[str, Any]]) -> set[str]:
    exprs = [expr for _, expr in dashboard_queries()] + rule_exprs(objects)
    return set().union(*(metric_names(expr) for expr in exprs))


def rules_file(objects: list[dict[str, Any]], directory: Path) -> Path:
    (rule,) = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = os.environ.get("PAPO_PROMTOOL") or shutil.which("promtool")
    if not binary:
        pytest.skip(
            "promtool not installed (Debian package `prometheus`; scripts/install-tools.sh --with-promtool)"
        )
    return binary


def test_dashboards_are_valid_json_with_unique_uids() -> None:
    assert len(DASHBOARDS) >= 3
    uids, titles = [], []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.append(board["uid"])
        titles.append(board["title"])
        assert len(board["uid"]) <= 40, path.name
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        variables = {variable["name"]: variable for variable in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == "${datasource}", f"{path.name}: {panel['title']}"
                assert target["expr"].strip()
    assert len(uids) == len(set(uids)), f"duplicate dashboard uids: {uids}"
    assert len(titles) == len(set(titles))


def test_canary_dashboard_compares_tracks() -> None:
    board = json.loads((CHART / "dashboards" / "papo-canary.json").read_text())
    exprs = [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]
    assert exprs and all("by (track" in expr for expr in exprs)


def test_every_queried_metric_exists(render: Any) -> None:
    objects = render("defaults", *MONITORING)
    known = known_metrics()
    used = used_metrics(objects)
    unknown = sorted(used - set(known))
    assert not unknown, f"dashboards or alerts query metrics nobody exposes: {unknown}"
    assert {known[name] for name in used} == {"papo", "faststream", "rabbitmq"}
    listed = METRICS_USED.read_text().split()
    assert listed == sorted(used), "metrics-used.txt is stale: python charts/papo/tests/test_monitoring.py"


@pytest.mark.parametrize("value_set", ["defaults", "all-on"])
def test_promtool_checks_rules(render: Any, promtool: str, tmp_path: Path, value_set: str) -> None:
    path = rules_file(render(value_set, *MONITORING), tmp_path)
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_as_intended(render: Any, promtool: str, tmp_path: Path) -> None:
    rules_file(render("defaults", *MONITORING), tmp_path)
    shutil.copy(TESTS / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    result = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    rules = []
    for index, (name, query) in enumerate(dashboard_queries()):
        expr = query
        for variable, sample in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
            expr = expr.replace(variable, sample)
        rules.append({"record": f"dashboard:query_{index}:{Path(name).stem.replace('-', '_')}", "expr": expr})
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("value_set", ["defaults", "all-on"])
def test_monitoring_objects_match_prometheus_operator_schemas(render: Any, value_set: str) -> None:
    modules = REPO / ".tools" / "node" / "node_modules"
    node = shutil.which("node")
    if node is None or not (modules / "@kubernetes-models" / "prometheus-operator").is_dir():
        pytest.skip("node or @kubernetes-models/prometheus-operator missing (scripts/install-tools.sh)")
    objects = [
        obj
        for obj in render(value_set, *MONITORING)
        if obj["apiVersion"].startswith("monitoring.coreos.com/")
    ]
    assert {obj["kind"] for obj in objects} == {"ServiceMonitor", "PrometheusRule"}
    result = subprocess.run(
        [node, str(TESTS / "validate_monitoring.mjs"), str(modules)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


if __name__ == "__main__":
    helm = os.environ.get("PAPO_HELM") or str(REPO / ".tools" / "bin" / "helm")
    rendered = subprocess.run(
        [helm, "template", "papo", str(CHART), *MONITORING], capture_output=True, text=True, check=True
    ).stdout
    names = used_metrics([doc for doc in yaml.safe_load_all(rendered) if doc])
    METRICS_USED.write_text("".join(f"{name}\n" for name in sorted(names)))
    print(f"{len(names)} metric names written to {METRICS_USED.relative_to(REPO)}", file=sys.stderr)
