"""Error codes of the API and the bus, and the HTTP status each maps to."""

from __future__ import annotations

INVALID_JSON = "invalid_json"
INVALID_REQUEST = "invalid_request"
INVALID_BODY = "invalid_body"
INVALID_CURSOR = "invalid_cursor"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
NOT_FOUND = "not_found"
DUPLICATE = "duplicate"
CLIENT_MSG_ID_REUSED = "client_msg_id_reused"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
TOO_MANY_SOCKETS = "too_many_sockets"
UNAVAILABLE = "unavailable"
OVERLOADED = "overloaded"
INTERNAL = "internal"

HTTP_STATUS = {
    INVALID_JSON: 400,
    INVALID_REQUEST: 400,
    INVALID_BODY: 400,
    INVALID_CURSOR: 400,
    UNAUTHORIZED: 401,
    FORBIDDEN: 403,
    NOT_FOUND: 404,
    "method_not_allowed": 405,
    DUPLICATE: 409,
    CLIENT_MSG_ID_REUSED: 409,
    TOO_LARGE: 413,
    "unsupported_media_type": 415,
    RATE_LIMITED: 429,
    TOO_MANY_SOCKETS: 429,
    INTERNAL: 500,
    UNAVAILABLE: 503,
    OVERLOADED: 503,
}
