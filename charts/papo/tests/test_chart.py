"""The chart renders, for every value set in values/, objects that Kubernetes 1.30 and KEDA accept, wired the
way papo needs: one queue per ScaledObject (topology.py's), clean selectors, locked-down pods, secrets only
by reference, and a `fail` for values that contradict each other."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from papo_common.topology import SERVICE_QUEUES

CHART = Path(__file__).resolve().parents[1]
VALUE_SETS = sorted(path.stem for path in (CHART / "tests" / "values").glob("*.yaml"))
MONITORING = (
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
)
NOT_IN_SELECTORS = {"helm.sh/chart", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}
COMMON_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
}
QUEUES = {queue.service: queue.name for queue in SERVICE_QUEUES}
CHART_VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SECRET_VARS = set(CHART_VALUES["secrets"]["keys"])


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in of_kind(objects, kind)}


def component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def strict(schema: Any) -> Any:
    """A CRD's structural schema as JSON Schema in which unknown fields are errors, as the API server's
    field validation treats them."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def test_lint_strict(helm: str) -> None:
    for value_set in VALUE_SETS:
        result = subprocess.run(
            [
                helm,
                "lint",
                "--strict",
                str(CHART),
                "--values",
                str(CHART / "tests" / "values" / f"{value_set}.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{value_set}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_objects_are_valid_kubernetes_and_keda(
    render: Any, keda_crds: dict[str, dict[str, Any]], object_counts: dict[str, Counter[str]], value_set: str
) -> None:
    objects = render(value_set, *MONITORING)
    object_counts[value_set] = Counter(obj["kind"] for obj in objects)
    assert objects
    for obj in objects:
        api = obj["apiVersion"]
        where = f"{value_set}: {obj['kind']}/{obj['metadata']['name']}"
        if api.startswith("keda.sh/"):
            schema = keda_crds.get(f"{api}/{obj['kind']}")
            assert schema is not None, f"{where}: no KEDA CRD for {api} {obj['kind']}"
            errors = list(jsonschema.Draft7Validator(strict(schema)).iter_errors(obj))
            assert not errors, f"{where}: " + "; ".join(
                f"{list(e.absolute_path)}: {e.message}" for e in errors
            )
        elif api.startswith("monitoring.coreos.com/"):
            continue  # test_monitoring.py validates these
        else:
            try:
                kubernetes_validate.validate(obj, "1.30.0", strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{where}: {error.message} at {list(error.path)}", pytrace=False)
        assert len(obj["metadata"]["name"]) <= 63, where


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_labels_and_selectors(render: Any, value_set: str) -> None:
    objects = render(value_set, *MONITORING)
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert set(labels) >= COMMON_LABELS, f"{obj['kind']}/{obj['metadata']['name']} lacks common labels"

    deployments = of_kind(objects, "Deployment")
    selectors: list[tuple[str, dict[str, str]]] = []
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert not NOT_IN_SELECTORS & set(selector), deployment["metadata"]["name"]
        assert selector.items() <= template_labels.items(), deployment["metadata"]["name"]
        assert selector["track"] in {"stable", "canary"}
        selectors.append((deployment["metadata"]["name"], selector))
    # No Deployment's selector may adopt another Deployment's pods.
    for deployment in deployments:
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        owners = [name for name, selector in selectors if selector.items() <= pod_labels.items()]
        assert owners == [deployment["metadata"]["name"]], f"overlapping selectors: {owners}"

    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        assert not NOT_IN_SELECTORS & set(selector)
        assert "track" not in selector, "a Service sends to both tracks"
        matched = [
            d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched, f"Service {service['metadata']['name']} selects no pods"
        assert {component(d) for d in matched} == {component(service)}
    for kind in ("PodDisruptionBudget", "ServiceMonitor"):
        for obj in of_kind(objects, kind):
            assert not NOT_IN_SELECTORS & set(obj["spec"]["selector"]["matchLabels"])


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_are_locked_down_and_probed(render: Any, value_set: str) -> None:
    objects = render(value_set)
    workloads = of_kind(objects, "Deployment") + of_kind(objects, "Job")
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    for deployment in of_kind(objects, "Deployment"):
        container = pod_spec(deployment)["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["ports"] == [
            {
                "name": "http",
                "containerPort": 8080 if component(deployment) == "ingest" else 8000,
                "protocol": "TCP",
            }
        ]
        env = env_of(container)
        assert env["PAPO_SERVICE_TRACK"]["value"] == deployment["metadata"]["labels"]["track"]
        port_var = "PAPO_INGEST_PORT" if component(deployment) == "ingest" else "PAPO_HTTP_PORT"
        assert env[port_var]["value"] == str(container["ports"][0]["containerPort"])
        assert env["PAPO_ENVIRONMENT"]["value"] == "production"


def test_no_default_resources(render: Any) -> None:
    for workload in of_kind(render("defaults"), "Deployment") + of_kind(render("defaults"), "Job"):
        assert "resources" not in pod_spec(workload)["containers"][0], workload["metadata"]["name"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_secrets_only_by_reference(render: Any, value_set: str) -> None:
    objects = render(value_set)
    assert not of_kind(objects, "Secret"), "the chart never templates a Secret"
    values = yaml.safe_load((CHART / "tests" / "values" / f"{value_set}.yaml").read_text()) or {}
    secret = (values.get("secrets") or {}).get("existingSecret") or (
        "papo-prod" if value_set == "all-on" else "papo"
    )
    for workload in of_kind(objects, "Deployment") + of_kind(objects, "Job"):
        for name, item in env_of(pod_spec(workload)["containers"][0]).items():
            if name in SECRET_VARS:
                assert "value" not in item, f"{name} is a secret"
                assert item["valueFrom"]["secretKeyRef"]["name"] == secret
            else:
                assert not any(
                    scheme in str(item.get("value", "")) for scheme in ("amqp://", "redis://", "postgresql")
                )


def test_each_consumer_scales_on_its_own_queue(render: Any) -> None:
    consumers = {name for name, values in CHART_VALUES["components"].items() if values.get("queue")}
    assert consumers == set(QUEUES), "every queue of topology.py has a component, and only those"
    for name, values in CHART_VALUES["components"].items():
        assert values.get("queue") == QUEUES.get(name)

    for value_set in ("keda", "all-on"):
        objects = render(value_set)
        scaled = of_kind(objects, "ScaledObject")
        assert {component(obj) for obj in scaled} == set(QUEUES)
        deployments = by_name(objects, "Deployment")
        auth = by_name(objects, "TriggerAuthentication")
        for obj in scaled:
            (trigger,) = obj["spec"]["triggers"]
            assert trigger["type"] == "rabbitmq"
            assert trigger["metadata"]["queueName"] == QUEUES[component(obj)]
            assert trigger["metadata"]["mode"] == "QueueLength"
            assert {"value", "activationValue"} <= set(trigger["metadata"])
            assert trigger["authenticationRef"]["name"] in auth
            target = deployments[obj["spec"]["scaleTargetRef"]["name"]]
            assert target["metadata"]["labels"]["track"] == "stable"
            assert "replicas" not in target["spec"], (
                "an autoscaled Deployment leaves replicas to the autoscaler"
            )
        (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")
        assert component(hpa) == "ingest"
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert "replicas" not in deployments[hpa["spec"]["scaleTargetRef"]["name"]]["spec"]

    keda = render("keda")
    scaled = {component(obj): obj["spec"] for obj in of_kind(keda, "ScaledObject")}
    assert scaled["llm"]["minReplicaCount"] == 0 and scaled["transcribe"]["minReplicaCount"] == 0
    assert scaled["debounce"]["minReplicaCount"] == 1
    assert scaled["llm"]["triggers"][0]["metadata"]["value"] == "10"
    assert scaled["llm"]["fallback"] == {"failureThreshold": 3, "replicas": 2}
    assert (
        scaled["persist"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
            "stabilizationWindowSeconds"
        ]
        == 300
    )
    (auth,) = of_kind(keda, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "host", "name": "papo", "key": "rabbitmq-url"}]
    (auth,) = of_kind(render("all-on"), "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"][0]["name"] == "papo-keda"
    assert not of_kind(render("defaults"), "ScaledObject"), "autoscaling is off unless enabled"
    assert not of_kind(render("defaults"), "HorizontalPodAutoscaler")


def test_transcribe_on_gpu_nodes(render: Any) -> None:
    deployments = {component(d): d for d in of_kind(render("gpu"), "Deployment")}
    spec = pod_spec(deployments["transcribe"])
    container = spec["containers"][0]
    assert container["resources"]["limits"] == {"memory": "12Gi", "nvidia.com/gpu": 1}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["runtimeClassName"] == "nvidia"
    env = env_of(container)
    assert env["PAPO_TRANSCRIBE_ENGINE"]["value"] == "faster-whisper"
    assert env["PAPO_TRANSCRIBE_BATCH_SIZE"]["value"] == "8"
    assert env["PAPO_TRANSCRIBE_BATCH_WAIT_MS"]["value"] == "50"
    assert env["PAPO_TRANSCRIBE_DEVICE"]["value"] == "cuda"
    for name, deployment in deployments.items():
        if name != "transcribe":
            assert "nvidia.com/gpu" not in str(pod_spec(deployment)), name
    default = {component(d): d for d in of_kind(render("defaults"), "Deployment")}["transcribe"]
    assert "nodeSelector" not in pod_spec(default), "GPU scheduling only when gpu.enabled"
    assert "PAPO_TRANSCRIBE_ENGINE" not in env_of(pod_spec(default)["containers"][0]), "empty means unset"


def test_canary_tracks(render: Any) -> None:
    objects = render("canary")
    deployments = by_name(objects, "Deployment")
    assert set(deployments) == {f"papo-{name}" for name in CHART_VALUES["components"]} | {
        "papo-ingest-canary",
        "papo-llm-canary",
    }
    for name in ("ingest", "llm"):
        canary = deployments[f"papo-{name}-canary"]
        assert canary["metadata"]["labels"]["track"] == "canary"
        assert canary["spec"]["replicas"] == 1
        container = pod_spec(canary)["containers"][0]
        assert container["image"] == f"ghcr.io/papo-ai/papo-{name}:0.2.0-rc.1"
        assert env_of(container)["PAPO_SERVICE_TRACK"]["value"] == "canary"
        assert (
            pod_spec(deployments[f"papo-{name}"])["containers"][0]["image"]
            == f"ghcr.io/papo-ai/papo-{name}:0.1.0"
        )
    assert (
        env_of(pod_spec(deployments["papo-llm-canary"])["containers"][0])["PAPO_LLM_MODEL"]["value"]
        == "gpt-4.1-mini"
    )
    assert (
        env_of(pod_spec(deployments["papo-llm"])["containers"][0])["PAPO_LLM_MODEL"]["value"] == "gpt-4o-mini"
    )
    ingest = by_name(objects, "Service")["papo-ingest"]
    tracks = {
        d["metadata"]["labels"]["track"]
        for d in deployments.values()
        if ingest["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
    }
    assert tracks == {"stable", "canary"}, "ingest's Service sends to both tracks"
    all_on = by_name(render("all-on"), "Deployment")
    image = pod_spec(all_on["papo-prod-llm-canary"])["containers"][0]["image"]
    assert image == "registry.example.com/chatbots/papo-llm-experimental:0.2.0-rc.1"
    assert pod_spec(all_on["papo-prod-transcribe"])["containers"][0]["image"].endswith(
        "@sha256:" + "0123456789abcdef" * 4
    )


def test_migrations_hook(render: Any) -> None:
    (job,) = of_kind(render("defaults"), "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = pod_spec(job)["containers"][0]
    assert (container["command"], container["args"]) == (["papo"], ["migrate"])
    assert env_of(container)["PAPO_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    assert not of_kind(render("defaults", "--set", "migrations.enabled=false"), "Job")


def test_monitoring_only_with_its_api_or_forced(render: Any) -> None:
    kinds = ("ServiceMonitor", "PrometheusRule")
    without = render("defaults")
    assert not [obj for obj in without if obj["kind"] in kinds]
    with_api = render("defaults", *MONITORING)
    assert sorted(obj["kind"] for obj in with_api if obj["kind"] in kinds) == sorted(kinds)
    forced = render("all-on")
    assert sorted(obj["kind"] for obj in forced if obj["kind"] in kinds) == sorted(kinds)
    off = render(
        "defaults",
        *MONITORING,
        "--set",
        "metrics.serviceMonitor.enabled=false",
        "--set",
        "metrics.prometheusRule.enabled=false",
    )
    assert not [obj for obj in off if obj["kind"] in kinds]
    for crd, kind in (("ServiceMonitor", "ServiceMonitor"), ("PrometheusRule", "PrometheusRule")):
        # each object needs its own CRD: a cluster may have one without the other
        only = render("defaults", "--api-versions", f"monitoring.coreos.com/v1/{crd}")
        assert [obj["kind"] for obj in only if obj["kind"] in kinds] == [kind]
    group_only = render("defaults", "--api-versions", "monitoring.coreos.com/v1")
    assert not [obj for obj in group_only if obj["kind"] in kinds]
    (monitor,) = of_kind(with_api, "ServiceMonitor")
    assert monitor["spec"]["podTargetLabels"] == ["track"]
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} == {"http"}


def test_dashboards_ship_as_labelled_configmaps(render: Any) -> None:
    files = sorted(path.name for path in (CHART / "dashboards").glob("*.json"))
    assert len(files) >= 3
    maps = of_kind(render("defaults"), "ConfigMap")
    assert sorted(key for cm in maps for key in cm["data"]) == files
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert not of_kind(render("defaults", "--set", "metrics.dashboards.enabled=false"), "ConfigMap")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ["components.llm.keda.enabled=true", "components.llm.hpa.enabled=true"],
            "one autoscaler per Deployment",
        ),
        (["components.ingest.keda.enabled=true"], "keda.enabled needs a queue"),
        (["components.ingest.hpa.enabled=true"], "needs resources.requests.cpu"),
        (
            [
                "components.llm.keda.enabled=true",
                "components.llm.keda.minReplicas=5",
                "components.llm.keda.maxReplicas=2",
            ],
            "is above keda.maxReplicas",
        ),
        (["components.llm.canary.enabled=true"], "needs canary.image.tag or canary.image.digest"),
        (["components.llm.env.PAPO_LLM_API_KEY=sk-plain"], "is a secret; list it in secretEnv"),
        (["components.llm.env.PAPO_SERVICE_TRACK=canary"], "is set by the chart"),
        (["components.llm.secretEnv={PAPO_UNKNOWN}"], "has no key in secrets.keys"),
        (["components.transcribe.env.PAPO_TRANSCRIBE_ENGINE=whisper.cpp"], "PAPO_TRANSCRIBE_ENGINE"),
        (["components.notaservice.enabled=true"], "additional properties 'notaservice' not allowed"),
    ],
)
def test_contradictory_values_fail(render_error: Any, settings: list[str], message: str) -> None:
    extra = [arg for setting in settings for arg in ("--set", setting)]
    assert message in render_error("defaults", *extra)
