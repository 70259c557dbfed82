"""Client tokens: HS256 JWTs whose claims name the tenant and the user.

Claims: ``sub`` (user id), ``tenant`` (tenant id), ``exp`` (required),
``iat`` and ``nbf`` (optional). Only HS256 is accepted, so ``alg: none`` and
tokens signed with another algorithm or secret fail.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from libs.schema.types import TOKEN_PATTERN, is_id

ALGORITHM = "HS256"
LEEWAY = 5  # seconds of clock skew tolerated on exp/nbf


class AuthError(Exception):
    """The token is missing, malformed, expired, or not ours."""


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    user_id: str
    expires_at: float


def issue(
    secret: str,
    *,
    tenant: str,
    user_id: str,
    ttl: float = 3600.0,
    now: float | None = None,
) -> str:
    if not (is_id(tenant) and is_id(user_id)):
        raise ValueError("tenant and user ids must match " + TOKEN_PATTERN)
    issued = time.time() if now is None else now
    claims = {
        "sub": user_id,
        "tenant": tenant,
        "iat": int(issued),
        "exp": int(issued + ttl),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Principal:
    # A JWT is base64url and dots. Anything else (bytes of a header that were
    # not UTF-8 arrive as surrogates) is refused before the library sees it.
    if not token.isascii():
        raise AuthError("invalid token: not a JWT")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "tenant"]},
            leeway=LEEWAY,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    for name in ("exp", "nbf", "iat"):
        # NumericDate is a JSON number; the library would also take "123".
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AuthError(f"invalid {name} claim")
    tenant, user_id = claims.get("tenant"), claims.get("sub")
    if not (isinstance(tenant, str) and is_id(tenant)):
        raise AuthError("invalid tenant claim")
    if not (isinstance(user_id, str) and is_id(user_id)):
        raise AuthError("invalid sub claim")
    return Principal(tenant=tenant, user_id=user_id, expires_at=float(claims["exp"]))


class VerifiedTokens:
    """Tokens already verified, kept until they expire.

    Clients send the same token with every request, and checking an HS256
    signature is most of the gateway's CPU per request; a hit costs a dict
    lookup. The key is the whole token, signature included, so a token is
    only ever trusted after one full verification with this secret.
    """

    def __init__(self, secret: str, capacity: int = 100_000) -> None:
        self._secret = secret
        self._capacity = capacity
        self._known: OrderedDict[str, Principal] = OrderedDict()

    def verify(self, token: str) -> Principal:
        known = self._known.get(token)
        if known is not None and known.expires_at + LEEWAY > time.time():
            self._known.move_to_end(token)
            return known
        principal = verify(self._secret, token)
        self._known[token] = principal
        if len(self._known) > self._capacity:
            self._known.popitem(last=False)
        return principal
