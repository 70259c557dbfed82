"""JSON errors for every failure, and the middleware that guarantees them.

Every non-2xx answer has the body ``{"error": {"code", "message"}}``. Client
mistakes are 4xx with a specific code; anything unexpected is a logged 500,
and a dependency that is down is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from libs.schema import errors
from libs.schema.api import ErrorInfo, HttpError

log = logging.getLogger("gateway.errors")
_encode = msgspec.json.Encoder().encode
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        info: ErrorInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = errors.HTTP_STATUS.get(code, 500)
        self.info = info or ErrorInfo(
            code=code, message=message, retry_after=retry_after
        )
        self.headers = dict(headers or {})
        if self.info.retry_after is not None:
            # Rounded up: retrying after a rounded-down delay would be refused.
            self.headers.setdefault(
                "Retry-After", str(max(1, math.ceil(self.info.retry_after)))
            )

    @classmethod
    def from_info(
        cls, info: ErrorInfo, headers: dict[str, str] | None = None
    ) -> ApiError:
        return cls(info.code, info.message, headers=headers, info=info)


def json_error(error: ApiError) -> web.Response:
    headers = {"Content-Type": "application/json", **error.headers}
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="messaging"')
    return web.Response(
        status=error.status, body=_encode(HttpError(error=error.info)), headers=headers
    )


# aiohttp's own refusals (unknown route, wrong method, body too large) arrive
# as HTTPException; give them the same JSON shape.
_HTTP_CODES = {
    404: (errors.NOT_FOUND, "no such endpoint"),
    405: ("method_not_allowed", "method not allowed on this endpoint"),
    413: (errors.TOO_LARGE, "request body is too large"),
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_CODES.get(exc.status, (f"http_{exc.status}", exc.reason))
        error = ApiError(code, message)
        error.status = exc.status
        return json_error(error)
    except Exception:
        log.exception(
            "request.failed", extra={"method": request.method, "path": request.path}
        )
        return json_error(ApiError(errors.INTERNAL, "internal error"))
