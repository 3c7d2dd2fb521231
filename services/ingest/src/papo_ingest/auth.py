"""Who may post webhooks: whoever knows PAPO_WEBHOOK_TOKEN.

Evolution proves it in one of two ways, both configured on the instance webhook's `headers`: a custom header
`x-papo-token: <token>` sent verbatim, or `jwt_key: <token>`, which Evolution turns into
`Authorization: Bearer <JWT>` signed HS256 with the token, claims `{iat, exp: iat+600, app: "evolution",
action: "webhook"}`. Evolution has no HMAC of the body.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

TOKEN_HEADER = "x-papo-token"  # noqa: S105 - a header name, not a secret
RECOMMENDED_TOKEN_BYTES = 32
"""HS256 wants a key of at least 256 bits (RFC 7518 §3.2)."""


@dataclass(frozen=True)
class AuthFailure:
    """Why a webhook was refused. `reason` is a short fixed code (a metric label)."""

    reason: str
    detail: str


MISSING = AuthFailure("missing_credentials", f"send {TOKEN_HEADER} or Authorization: Bearer <JWT>")
WRONG_TOKEN = AuthFailure("wrong_token", f"{TOKEN_HEADER} does not match")
EXPIRED_JWT = AuthFailure("expired_jwt", "the bearer token has expired")
INVALID_JWT = AuthFailure("invalid_jwt", "the bearer token is not valid")


class WebhookAuthenticator:
    """Checks a request's headers against the token in constant time. With no token configured (explicit
    development opt-in) every request passes."""

    def __init__(self, token: str | None, *, leeway_seconds: int = 30) -> None:
        self._token = token.encode() if token else None
        self._leeway = leeway_seconds

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check(self, headers: Mapping[str, str]) -> AuthFailure | None:
        """None when the request is authentic, else why not. Either credential suffices."""
        if self._token is None:
            return None
        presented = headers.get(TOKEN_HEADER)
        if presented is not None and hmac.compare_digest(presented.encode(), self._token):
            return None
        scheme, _, bearer = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and bearer.strip():
            return self._check_jwt(bearer.strip())
        return WRONG_TOKEN if presented is not None else MISSING

    def _check_jwt(self, token: str) -> AuthFailure | None:
        try:
            claims = jwt.decode(
                token,
                self._token,
                # the one algorithm Evolution uses; never `none`, never chosen by the token's own header
                algorithms=["HS256"],
                leeway=self._leeway,
                options={"require": ["exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            return EXPIRED_JWT
        except jwt.InvalidTokenError:
            return INVALID_JWT
        if claims.get("app") != "evolution" or claims.get("action") != "webhook":
            return INVALID_JWT
        return None
