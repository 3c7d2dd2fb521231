"""Short garbage-collector pauses in a running service, and a metric of every pause.

A service imports Litestar or FastStream, pydantic, aio-pika, redis-py, SQLAlchemy, the openai SDK: 80,000 to
300,000 objects that CPython's cyclic collector tracks and that never become garbage. A pass over the oldest
generation walks all of them with the event loop stopped: 17 ms of CPU in debounce, 123 ms in the llm
(docs/performance.md). Under steady load such a pass is rare, but it stalls every message in flight.

A served process (`papo_common.service.serve` and ingest's `main` call `serve_process` before uvicorn runs
the app) therefore freezes its heap once it has started: `gc.collect()` drops what start-up left as garbage,
and `gc.freeze()` moves everything still alive into the permanent generation, which no pass walks again.
`freeze_heap` is called where each app has finished starting: the last after-startup hook of `consumer_app`
(once the consumers run), the end of ingest's lifespan start-up, and after a model loaded in the background.
Objects made while handling messages are collected as before.

Apps built in a test process are not served, so nothing is frozen there: tests keep the collector they
expect. A served process observes every pause in `papo_gc_pause_seconds`, by generation, and shows how much
it froze in `papo_gc_frozen_objects`.
"""

from __future__ import annotations

import gc
import logging
import time

from papo_common.metrics import GC_FROZEN_OBJECTS, GC_PAUSE_SECONDS

logger = logging.getLogger(__name__)


class _Pauses:
    """Whether this process serves an app, and the collector's callback that times each pause."""

    def __init__(self) -> None:
        self.served = False
        self._children = [GC_PAUSE_SECONDS.labels(generation=str(generation)) for generation in range(3)]
        self._started_at = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
        else:
            self._children[info["generation"]].observe(time.perf_counter() - self._started_at)


_pauses = _Pauses()


def serve_process() -> None:
    """Mark this process as one that serves a service: `freeze_heap` freezes from now on, and every pause of
    the collector is observed."""
    _pauses.served = True
    if _pauses not in gc.callbacks:
        gc.callbacks.append(_pauses)
    GC_FROZEN_OBJECTS.set_function(gc.get_freeze_count)


def freeze_heap() -> None:
    """In a served process: collect, then move every live object into the permanent generation."""
    if not _pauses.served:
        return
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    logger.info(
        "froze the heap",
        extra={"objects": gc.get_freeze_count(), "ms": round(1000 * (time.perf_counter() - started), 1)},
    )
