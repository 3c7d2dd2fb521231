"""`papo`: run one service (what a container runs), apply migrations, or run the whole stack locally."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

SERVICE_ORDER = ("persist", "deliver", "llm", "transcribe", "debounce", "ingest")
"""Start order for `papo dev`: consumers before producers, so nothing waits in a queue at start."""


def installed_services() -> dict[str, str]:
    """Services installed in this environment, discovered through the `papo.services` entry points, so the
    command line never imports a service it does not run."""
    return {ep.name: ep.value for ep in entry_points(group="papo.services")}


def _run(args: argparse.Namespace) -> int:
    services = entry_points(group="papo.services", name=args.service)
    if not services:
        known = ", ".join(sorted(installed_services())) or "none"
        print(f"papo: service {args.service!r} is not installed (installed: {known})", file=sys.stderr)
        return 2
    main = next(iter(services)).load()
    main()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from papo_common.db.migrate import upgrade
    from papo_common.logging import configure_logging
    from papo_common.settings import DatabaseSettings

    settings = DatabaseSettings()
    configure_logging("migrate", level=settings.log_level, fmt=settings.log_format)
    upgrade(settings.database_url.get_secret_value(), args.revision)
    print(f"papo: database migrated to {args.revision}")
    return 0


def _dev(args: argparse.Namespace) -> int:
    from papo_common.dev import run_stack

    return run_stack(services=args.services or None, migrate=not args.no_migrate)


def _simulator(args: argparse.Namespace) -> int:
    tools = entry_points(group="papo.tools", name="simulator")
    if not tools:
        print("papo: the simulator is not installed (pip install -e libs/simulator)", file=sys.stderr)
        return 2
    next(iter(tools)).load()()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="papo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one service in the foreground")
    run.add_argument("service", help="one of: " + ", ".join(SERVICE_ORDER))
    run.set_defaults(handler=_run)

    migrate = commands.add_parser("migrate", help="apply database migrations (PAPO_DATABASE_URL)")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(handler=_migrate)

    dev = commands.add_parser("dev", help="run every installed service locally, one process each")
    dev.add_argument("services", nargs="*", help="a subset of services (default: all installed)")
    dev.add_argument("--no-migrate", action="store_true", help="skip `papo migrate` before starting")
    dev.set_defaults(handler=_dev)

    simulator = commands.add_parser(
        "simulator", help="a simulated WhatsApp in the browser, speaking Evolution API v2 to papo"
    )
    simulator.set_defaults(handler=_simulator)

    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
