"""Who is calling: the JWT from the Authorization header (or ``?token=``)."""

from __future__ import annotations

from aiohttp import web

from libs import auth
from libs.schema import errors
from services.gateway.errors import ApiError


def bearer_token(request: web.Request, *, allow_query: bool = False) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                errors.UNAUTHORIZED, "Authorization must be 'Bearer <token>'"
            )
        return token.strip()
    if allow_query:
        return request.query.get("token") or None
    return None


def authenticate(tokens: auth.VerifiedTokens, token: str | None) -> auth.Principal:
    if token is None:
        raise ApiError(errors.UNAUTHORIZED, "missing bearer token")
    try:
        return tokens.verify(token)
    except auth.AuthError as exc:
        raise ApiError(errors.UNAUTHORIZED, str(exc)) from exc
