"""JSON answers for errors raised outside the webhook's own outcomes. Never a stack trace on the wire."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from opentelemetry import trace

logger = logging.getLogger(__name__)


def http_error(_: Request[Any, Any, Any], error: HTTPException) -> Response[dict[str, Any]]:
    """401 from a guard, 404/405 for unknown routes, 400 for bad parameters, 503 from the admin API while a
    dependency is down, and any other deliberate HTTP error."""
    status = {401: "unauthorized", 503: "unavailable"}.get(error.status_code, "error")
    content: dict[str, Any] = {"status": status, "detail": str(error.detail)}
    if isinstance(error, ValidationException) and isinstance(error.extra, list):
        # which parameter or body field was wrong, and why (never the request's values)
        content["errors"] = [
            {"key": item.get("key"), "message": item.get("message")}
            for item in error.extra
            if isinstance(item, dict)
        ]
    return Response(content, status_code=error.status_code)


_PERSON_IN_PATH = re.compile(r"(/conversations/)[^/]+")


def loggable_path(path: str) -> str:
    """The path without the person: admin routes carry a phone number or JID after `/conversations/`."""
    return _PERSON_IN_PATH.sub(r"\1{user}", path)


def internal_error(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, str]]:
    """A bug: logged with its trace id and traceback, answered 500 with only the trace id. Evolution retries
    a 500, so the message is not lost once the bug is fixed within its retry window."""
    trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
    logger.error("unhandled error in %s %s", request.method, loggable_path(request.url.path), exc_info=error)
    return Response({"status": "error", "detail": "internal error", "trace_id": trace_id}, status_code=500)
