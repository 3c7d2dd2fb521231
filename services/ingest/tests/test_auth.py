"""Webhook authentication: the shared-token header and Evolution's HS256 bearer JWT."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from papo_ingest.auth import EXPIRED_JWT, INVALID_JWT, MISSING, WRONG_TOKEN, WebhookAuthenticator

TOKEN = "k3y-" + "0123456789abcdef" * 4
auth = WebhookAuthenticator(TOKEN, leeway_seconds=30)


def evolution_jwt(key: str = TOKEN, *, issued: float | None = None, **overrides: Any) -> str:
    """A token exactly as Evolution's WebhookController.generateJwtToken signs it."""
    iat = int(issued if issued is not None else time.time())
    claims = {"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook", **overrides}
    return jwt.encode(claims, key, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_the_token_header_is_accepted() -> None:
    assert auth.check({"x-papo-token": TOKEN}) is None


def test_a_wrong_token_header_is_refused() -> None:
    assert auth.check({"x-papo-token": TOKEN[:-1]}) == WRONG_TOKEN
    assert auth.check({"x-papo-token": ""}) == WRONG_TOKEN


def test_no_credentials_are_refused() -> None:
    assert auth.check({}) == MISSING
    assert auth.check({"authorization": "Basic Zm9vOmJhcg=="}) == MISSING


def test_a_valid_evolution_jwt_is_accepted() -> None:
    assert auth.check(bearer(evolution_jwt())) is None
    assert auth.check({"authorization": f"bearer {evolution_jwt()}"}) is None


def test_an_expired_jwt_is_refused() -> None:
    assert auth.check(bearer(evolution_jwt(issued=time.time() - 700))) == EXPIRED_JWT


def test_expiry_has_a_small_leeway_for_clock_skew() -> None:
    assert auth.check(bearer(evolution_jwt(issued=time.time() - 620))) is None


def test_a_jwt_signed_with_another_key_is_refused() -> None:
    assert auth.check(bearer(evolution_jwt("another-key-of-thirty-two-bytes!!"))) == INVALID_JWT


def test_an_unsigned_jwt_alg_none_is_refused() -> None:
    iat = int(time.time())
    unsigned = jwt.encode(
        {"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}, None, "none"
    )
    assert auth.check(bearer(unsigned)) == INVALID_JWT


def test_a_jwt_with_another_hmac_algorithm_is_refused() -> None:
    iat = int(time.time())
    other = jwt.encode(
        {"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}, TOKEN, "HS512"
    )
    assert auth.check(bearer(other)) == INVALID_JWT


@pytest.mark.parametrize("claims", [{"app": "other"}, {"action": "login"}])
def test_a_jwt_for_another_purpose_is_refused(claims: dict[str, str]) -> None:
    assert auth.check(bearer(evolution_jwt(**claims))) == INVALID_JWT


def test_a_jwt_without_expiry_is_refused() -> None:
    no_exp = jwt.encode({"iat": int(time.time()), "app": "evolution", "action": "webhook"}, TOKEN, "HS256")
    assert auth.check(bearer(no_exp)) == INVALID_JWT


def test_garbage_bearer_is_refused() -> None:
    assert auth.check(bearer("not.a.jwt")) == INVALID_JWT


def test_either_credential_suffices() -> None:
    headers = {"x-papo-token": "wrong", "authorization": f"Bearer {evolution_jwt()}"}
    assert auth.check(headers) is None


def test_without_a_token_everything_passes() -> None:
    assert WebhookAuthenticator(None).check({}) is None
    assert WebhookAuthenticator(None).enabled is False
