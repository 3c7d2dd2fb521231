"""`papo dev`: the whole stack on one machine, every service its own process, logs prefixed by service."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping

from papo_common.cli import SERVICE_ORDER, installed_services

DEV_PORTS: Mapping[str, int] = {
    "ingest": 8080,
    "debounce": 8101,
    "transcribe": 8102,
    "llm": 8103,
    "persist": 8104,
    "deliver": 8105,
}
"""Health/metrics port of each service in `papo dev` (ingest's is its webhook port)."""

_COLOURS = {"ingest": 36, "debounce": 35, "transcribe": 33, "llm": 32, "persist": 34, "deliver": 31}


def service_env(
    service: str, base: Mapping[str, str], ports: Mapping[str, int] = DEV_PORTS
) -> dict[str, str]:
    """The environment one service runs with under `papo dev`: readable logs, its own port."""
    env = dict(base)
    env.setdefault("PAPO_LOG_FORMAT", "text")
    env["PAPO_HTTP_PORT"] = str(ports.get(service, 8100))
    if service == "ingest":
        env["PAPO_INGEST_PORT"] = str(ports["ingest"])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_services(
    services: Iterable[str],
    base_env: Mapping[str, str] | None = None,
    ports: Mapping[str, int] = DEV_PORTS,
) -> dict[str, subprocess.Popen[bytes]]:
    """Start each service as `python -m papo_common.cli run <service>` with its dev environment."""
    env = dict(base_env if base_env is not None else os.environ)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for service in services:
        processes[service] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "papo_common.cli", "run", service],
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
    if migrate:
        subprocess.run([sys.executable, "-m", "papo_common.cli", "migrate"], check=True)
    processes = start_services(chosen)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        f"papo dev: started {', '.join(chosen)}; webhook on :{DEV_PORTS['ingest']}; Ctrl-C stops", flush=True
    )
    try:
        return _pump(processes)
    except KeyboardInterrupt:
        return 0
    finally:
        stop_services(processes)
