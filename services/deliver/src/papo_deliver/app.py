"""deliver's ASGI app: the broker consuming `papo.deliver`, health, readiness and metrics."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from papo_common.redis_durability import require_durable_redis
from papo_common.service import consumer_app, make_service_broker, serve
from papo_deliver.handlers import register_handlers
from papo_deliver.runtime import DeliverRuntime
from papo_deliver.settings import DeliverSettings


def create_app(settings: DeliverSettings | None = None) -> AsgiFastStream:
    """Build the deliver service. Its clients open on startup and close after the broker has stopped."""
    settings = settings or DeliverSettings()
    broker = make_service_broker("deliver", settings)
    runtime = DeliverRuntime(settings)
    register_handlers(broker, runtime)
    app = consumer_app(broker, checks={"redis": runtime.redis_ready}, on_startup=[runtime.start])
    # consumer_app's on_shutdown runs before the broker drains in-flight messages; closing the HTTP client
    # there would fail the sends still running, so it closes after the broker stopped instead.
    app.after_shutdown(runtime.stop)
    return app


def main() -> None:
    settings = DeliverSettings()
    app = create_app(settings)
    require_durable_redis(settings)
    serve(app, settings)
