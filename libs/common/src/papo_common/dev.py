"""`papo dev`: the whole stack on one machine, every service its own process, logs prefixed by service."""

from __future__ import annotations

import os
import secrets
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from papo_common.cli import SERVICE_ORDER, installed_services

DEV_PORTS: Mapping[str, int] = {
    "ingest": 8080,
    "simulator": 8081,
    "debounce": 8101,
    "transcribe": 8102,
    "llm": 8103,
    "persist": 8104,
    "deliver": 8105,
}
"""Health/metrics port of each service in `papo dev` (ingest's is its webhook port; the simulator's serves
its Evolution API and its page)."""

BASE_PORT_VARIABLE = "PAPO_DEV_BASE_PORT"
"""Moves every port of `papo dev` by the same offset (ingest listens on it), to run two stacks side by side."""

_COLOURS = {
    "ingest": 36,
    "debounce": 35,
    "transcribe": 33,
    "llm": 32,
    "persist": 34,
    "deliver": 31,
    "simulator": 37,
}


@dataclass
class DevSetup:
    """What `papo dev` runs with: the environment of every process, whether the simulator plays Evolution,
    and what to show once at start (a generated token is shown there and nowhere else)."""

    env: dict[str, str]
    ports: dict[str, int]
    simulator: bool = False
    notices: list[str] = field(default_factory=list)


def dev_ports(environ: Mapping[str, str]) -> dict[str, int]:
    """`DEV_PORTS`, shifted so that ingest listens on `PAPO_DEV_BASE_PORT` when it is set."""
    base = environ.get(BASE_PORT_VARIABLE)
    offset = int(base) - DEV_PORTS["ingest"] if base else 0
    return {name: port + offset for name, port in DEV_PORTS.items()}


def simulator_installed() -> bool:
    return bool(entry_points(group="papo.tools", name="simulator"))


def dev_setup(environ: Mapping[str, str], *, simulator_available: bool = True) -> DevSetup:
    """In development, fill in what a fresh checkout lacks: a webhook token made for this run, and, when no
    Evolution API is configured, the simulator in its place (with its own API key, and an admin token so it
    can read papo's history for its timeline). No LLM key leaves the llm on its local model. Production gets
    nothing filled in: its services refuse to start without real settings, as they always have."""
    env, ports = dict(environ), dev_ports(environ)
    setup = DevSetup(env, ports)
    if env.get("PAPO_ENVIRONMENT", "development") == "production":
        return setup
    if (
        not env.get("PAPO_WEBHOOK_TOKEN", "").strip()
        and env.get("PAPO_WEBHOOK_ALLOW_UNAUTHENTICATED") != "true"
    ):
        env["PAPO_WEBHOOK_TOKEN"] = token = secrets.token_urlsafe(24)
        setup.notices.append(
            f"webhook token for this run (send it as x-papo-token; shown only here): {token}"
        )
    if simulator_available and not env.get("PAPO_EVOLUTION_URL"):
        setup.simulator = True
        simulator_url = f"http://127.0.0.1:{ports['simulator']}"
        env["PAPO_EVOLUTION_URL"] = simulator_url
        env.setdefault("PAPO_EVOLUTION_API_KEY", secrets.token_urlsafe(24))
        env.setdefault("PAPO_ADMIN_TOKEN", secrets.token_urlsafe(24))
        env["PAPO_SIMULATOR_PORT"] = str(ports["simulator"])
        env["PAPO_SIMULATOR_WEBHOOK_URL"] = f"http://127.0.0.1:{ports['ingest']}/webhook/evolution"
        env["PAPO_ADMIN_URL"] = f"http://127.0.0.1:{ports['ingest']}"
        setup.notices.append(f"chat with papo in the WhatsApp simulator: {simulator_url}/")
    if not (env.get("PAPO_LLM_API_KEY") or env.get("OPENAI_API_KEY") or env.get("PAPO_LLM_BASE_URL")):
        setup.notices.append("no LLM key: the llm answers with its local smoke-test model")
    return setup


def service_env(
    service: str, base: Mapping[str, str], ports: Mapping[str, int] = DEV_PORTS
) -> dict[str, str]:
    """The environment one service runs with under `papo dev`: readable logs, its own port."""
    env = dict(base)
    env.setdefault("PAPO_LOG_FORMAT", "text")
    env["PAPO_HTTP_PORT"] = str(ports.get(service, 8100))
    if service == "simulator":
        env["PAPO_SIMULATOR_PORT"] = str(ports["simulator"])
    if service == "ingest":
        env["PAPO_INGEST_PORT"] = str(ports["ingest"])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_services(
    services: Iterable[str],
    base_env: Mapping[str, str] | None = None,
    ports: Mapping[str, int] = DEV_PORTS,
) -> dict[str, subprocess.Popen[bytes]]:
    """Start each service as `python -m papo_common.cli run <service>` (the simulator as
    `... simulator`) with its dev environment."""
    env = dict(base_env if base_env is not None else os.environ)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for service in services:
        command = ["simulator"] if service == "simulator" else ["run", service]
        processes[service] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "papo_common.cli", *command],
            env=service_env(service, env, ports),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    return processes


def stop_services(processes: Mapping[str, subprocess.Popen[bytes]], *, timeout: float = 35.0) -> None:
    """SIGTERM every service (they drain and ack in-flight work), then SIGKILL what is left."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes.values():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            process.wait(remaining)
        except subprocess.TimeoutExpired:
            process.kill()


def _pump(processes: Mapping[str, subprocess.Popen[bytes]]) -> int:
    """Copy each service's output to ours with a coloured prefix until one exits or we are stopped."""
    selector = selectors.DefaultSelector()
    for name, process in processes.items():
        assert process.stdout is not None
        selector.register(process.stdout, selectors.EVENT_READ, name)
    width = max(map(len, processes))
    colour = sys.stdout.isatty()
    while True:
        for key, _ in selector.select(timeout=0.5):
            line = key.fileobj.readline()  # type: ignore[union-attr]
            if not line:
                selector.unregister(key.fileobj)
                continue
            name = key.data
            prefix = f"{name:<{width}} | "
            if colour:
                prefix = f"\x1b[{_COLOURS.get(name, 37)}m{prefix}\x1b[0m"
            sys.stdout.write(prefix + line.decode(errors="replace"))
            sys.stdout.flush()
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"papo dev: {name} exited with {process.returncode}; stopping the stack", flush=True)
                return process.returncode or 1


def run_stack(*, services: list[str] | None = None, migrate: bool = True) -> int:
    installed = installed_services()
    chosen = [s for s in SERVICE_ORDER if s in installed and (services is None or s in services)]
    if not chosen:
        print("papo dev: no service is installed (pip install -e services/<name>)", file=sys.stderr)
        return 2
    setup = dev_setup(os.environ, simulator_available=simulator_installed())
    if migrate:
        subprocess.run([sys.executable, "-m", "papo_common.cli", "migrate"], check=True, env=setup.env)
    processes = start_services(["simulator", *chosen] if setup.simulator else chosen, setup.env, setup.ports)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        f"papo dev: started {', '.join(processes)}; webhook on :{setup.ports['ingest']}; Ctrl-C stops",
        flush=True,
    )
    for notice in setup.notices:
        print(f"papo dev: {notice}", flush=True)
    try:
        return _pump(processes)
    except KeyboardInterrupt:
        return 0
    finally:
        stop_services(processes)
