"""Renders the chart with a real `helm` binary for the chart's tests.

helm comes from `PAPO_HELM` or `.tools/bin/helm` (scripts/install-tools.sh puts it there). KEDA's CRDs come
from `PAPO_KEDA_CRDS` (a folder of CRD files or one multi-document file), by default `../shared/k8s/keda-crds`
beside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[1]
REPO = CHART.parents[1]
KUBERNETES_VERSION = "1.30.0"

Render = Callable[..., list[dict[str, Any]]]


def tool(env: str, name: str) -> str | None:
    """A tool from `env`, then `.tools/bin/<name>`, then PATH."""
    candidates = [os.environ.get(env), str(REPO / ".tools" / "bin" / name), shutil.which(name)]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="session")
def helm() -> str:
    binary = tool("PAPO_HELM", "helm")
    if binary is None:
        pytest.fail(
            "helm not found: run scripts/install-tools.sh (puts it in .tools/bin/helm) or set PAPO_HELM",
            pytrace=False,
        )
    return binary


@cache
def _render(helm: str, values: str | None, extra: tuple[str, ...]) -> tuple[str, str, int]:
    command = [
        helm,
        "template",
        "papo",
        str(CHART),
        "--namespace",
        "papo",
        "--kube-version",
        KUBERNETES_VERSION,
    ]
    if values:
        command += ["--values", str(CHART / "tests" / "values" / f"{values}.yaml")]
    result = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=120, check=False)
    return result.stdout, result.stderr, result.returncode


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """`render("keda", "--set", "a=b")`: the objects `helm template` renders for a value set, in order."""

    def run(values: str | None = None, *extra: str) -> list[dict[str, Any]]:
        stdout, stderr, code = _render(helm, values, extra)
        if code != 0:
            pytest.fail(
                f"helm template failed for {values} {' '.join(extra)}:\n{stderr.strip()}", pytrace=False
            )
        return [doc for doc in yaml.safe_load_all(stdout) if doc]

    return run


@pytest.fixture(scope="session")
def render_error(helm: str) -> Callable[..., str]:
    """The error `helm template` stops with for a value set (fails the test if it renders)."""

    def run(values: str | None = None, *extra: str) -> str:
        _, stderr, code = _render(helm, values, extra)
        assert code != 0, f"expected helm template to fail with {extra}"
        return stderr

    return run


@pytest.fixture(scope="session")
def keda_crds() -> dict[str, dict[str, Any]]:
    """openAPIV3Schema of each KEDA kind, by kind."""
    location = Path(os.environ.get("PAPO_KEDA_CRDS") or REPO.parent / "shared" / "k8s" / "keda-crds")
    if not location.exists():
        pytest.fail(
            f"KEDA CRDs not found at {location}: set PAPO_KEDA_CRDS to a folder of KEDA's CRD files "
            "(kedacore/keda config/crd/bases) or to the keda-<version>-crds.yaml of a KEDA release",
            pytrace=False,
        )
    files = sorted(location.glob("*.yaml")) if location.is_dir() else [location]
    schemas: dict[str, dict[str, Any]] = {}
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            for version in doc["spec"]["versions"]:
                if version.get("served"):
                    kind = doc["spec"]["names"]["kind"]
                    schemas[f"{doc['spec']['group']}/{version['name']}/{kind}"] = version["schema"][
                        "openAPIV3Schema"
                    ]
    return schemas


_COUNTS = pytest.StashKey[dict[str, Counter[str]]]()


@pytest.fixture(scope="session")
def object_counts(request: pytest.FixtureRequest) -> dict[str, Counter[str]]:
    """Rendered objects by kind per value set, printed at the end of the run."""
    return request.config.stash.setdefault(_COUNTS, {})


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    counts = config.stash.get(_COUNTS, {})
    if not counts:
        return
    terminalreporter.section("papo chart: rendered objects per value set (with the monitoring CRDs)")
    for value_set, kinds in sorted(counts.items()):
        detail = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
        terminalreporter.write_line(f"{value_set}: {sum(kinds.values())} objects ({detail})")
