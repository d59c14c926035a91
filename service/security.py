"""Bearer API keys: one set for inference, a separate admin key for the repository API."""

from __future__ import annotations

import hmac

from fastapi import Request

from service.errors import Forbidden, Unauthorized


def _bearer(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()


def _matches(token: str, keys) -> bool:
    # Compare against every key without stopping early, in constant time per key.
    found = False
    for key in keys:
        found |= hmac.compare_digest(token.encode(), key.get_secret_value().encode())
    return found


def api_key_valid(settings, authorization: str) -> bool:
    """True when auth is off, or the Authorization header carries an API key or the admin key."""
    if not settings.auth_enabled:
        return True
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    keys = list(settings.api_keys) + ([settings.admin_key] if settings.admin_key else [])
    return _matches(token.strip(), keys)


async def require_api_key(request: Request) -> None:
    if not api_key_valid(request.app.state.settings, request.headers.get("authorization", "")):
        raise Unauthorized()


async def require_admin_key(request: Request) -> None:
    check_admin_key(request.app.state.settings, request.headers.get("authorization", ""))


def check_admin_key(settings, authorization: str) -> None:
    """Raise unless auth is off or the Authorization value carries the admin key (403 for an inference key)."""
    if not settings.auth_enabled:
        return
    token = _bearer(authorization)
    if token is None:
        raise Unauthorized("the repository API needs the admin key")
    if settings.admin_key is None or not _matches(token, [settings.admin_key]):
        if _matches(token, settings.api_keys):
            raise Forbidden("this key may not use the repository API; it needs the admin key")
        raise Unauthorized("the repository API needs the admin key")
