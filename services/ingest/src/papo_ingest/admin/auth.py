"""Who may use the admin API: whoever presents `Authorization: Bearer <PAPO_ADMIN_TOKEN>`.

The admin token is its own secret, never the webhook token: Evolution holds that one, and the admin API can
read people's messages, erase them and replay dead letters.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from pydantic import SecretStr

logger = logging.getLogger(__name__)

RECOMMENDED_TOKEN_BYTES = 32


class AdminAuthenticator:
    """Compares a request's bearer token with the admin token in constant time."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token.get_secret_value().strip().encode()
        if not self._token:
            raise ValueError("the admin token must not be empty")

    @property
    def short(self) -> bool:
        """Whether the token is shorter than a 256-bit random secret."""
        return len(self._token) < RECOMMENDED_TOKEN_BYTES

    def allows(self, headers: Mapping[str, str]) -> bool:
        """True when the headers carry `Authorization: Bearer <admin token>`."""
        scheme, _, presented = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # compare_digest takes as long for a wrong token of any content; only the length may leak
        return hmac.compare_digest(presented.strip().encode(), self._token)


async def require_admin_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of every admin route: 401 unless the request carries the admin bearer token."""
    authenticator: AdminAuthenticator = connection.app.state.admin_authenticator
    if not authenticator.allows(connection.headers):
        client = connection.client.host if connection.client else "unknown"
        logger.warning("admin request refused", extra={"client": client, "path": connection.url.path})
        raise NotAuthorizedException(detail="send Authorization: Bearer <PAPO_ADMIN_TOKEN>")
