"""The gateway's OpenAPI 3.1 document, generated from ``libs.schema.http``.

Schemas come from the msgspec structs (``msgspec.json.schema_components``),
so the document describes exactly what the gateway decodes and encodes. The
gateway serves it at ``/api/messaging/openapi.json``; ``msgctl contracts``
writes it to ``contracts/openapi.json``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import msgspec

from libs.schema import api, frames
from libs.schema.http import (
    ENDPOINTS,
    ERROR_HEADERS,
    ERROR_STATUS,
    HEADERS,
    Endpoint,
    error_codes,
)

API_VERSION = "1.0.0"
_REF = "#/components/schemas/{name}"

# Also on the gateway's port, as on every service's ops port.
OPERATIONS = {
    "/healthz": ("healthz", "The process is up", {200: "Always, while it runs"}),
    "/readyz": (
        "readyz",
        "Its dependencies answer",
        {200: "Ready for traffic", 503: "Not ready (starting, stopping, NATS lost)"},
    ),
    "/metrics": (
        "metrics",
        "Prometheus metrics",
        {200: "Text exposition format"},
    ),
}


def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """References by struct, and the components they point into."""
    types = [e.response for e in ENDPOINTS if e.response]
    types += [e.request for e in ENDPOINTS if e.request]
    types += [api.HttpError, frames.ServerFrame, frames.ClientFrame]
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    return dict(zip(types, refs, strict=True)), components


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _parameters(ep: Endpoint) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "in": p.where,
            "description": p.description,
            "required": p.required,
            "schema": p.schema,
        }
        for p in ep.params
    ]


def _header_refs(names: tuple[str, ...]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _operation(ep: Endpoint, refs: dict[Any, Any]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": ep.summary}
    if ep.response is not None:
        success["content"] = _json(refs[ep.response])
    elif ep.operation == "openapi":
        success["content"] = _json({"type": "object"})
    if ep.headers:
        success["headers"] = _header_refs(ep.headers)
    if ep.status == 101:
        success["description"] = "Switching Protocols: the socket is open"
    responses = {str(ep.status): success}
    for status in ep.errors:
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    operation: dict[str, Any] = {
        "operationId": ep.operation,
        "summary": ep.summary,
        "tags": [ep.tag],
        "responses": responses,
    }
    if ep.description:
        operation["description"] = ep.description
    if ep.params:
        operation["parameters"] = _parameters(ep)
    if ep.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": _json(refs[ep.request]),
        }
    if ep.public:
        operation["security"] = []
    return operation


def _error_responses(error_ref: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for status, meaning in ERROR_STATUS.items():
        codes = ", ".join(f"`{c}`" for c in error_codes(status))
        response: dict[str, Any] = {
            "description": f"{meaning}. Codes: {codes}.",
            "content": _json(error_ref),
        }
        if status in ERROR_HEADERS:
            response["headers"] = _header_refs(ERROR_HEADERS[status])
        out[f"E{status}"] = response
    return out


def document() -> dict[str, Any]:
    refs, components = _schemas()
    components["ServerFrame"] = refs[frames.ServerFrame]
    components["ClientFrame"] = refs[frames.ClientFrame]
    paths: dict[str, dict[str, Any]] = {}
    for ep in ENDPOINTS:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, refs)
    for path, (operation_id, summary, answers) in OPERATIONS.items():
        paths[path] = {
            "get": {
                "operationId": operation_id,
                "summary": summary,
                "tags": ["operations"],
                "security": [],
                "responses": {
                    str(status): {"description": text}
                    for status, text in answers.items()
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Messaging API",
            "version": API_VERSION,
            "description": (
                "Send and read messages of your tenant's conversations, and "
                "receive them live over a WebSocket. Every error answers "
                '`{"error": {"code", "message"}}`; unknown paths answer 404 '
                "and wrong methods 405 in the same shape. Generated from the "
                "gateway's code: `contracts/openapi.json`."
            ),
        },
        "servers": [
            {"url": "http://127.0.0.1:8080", "description": "make run"},
            {"url": "http://localhost:8080", "description": "docker compose up"},
        ],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "messaging", "description": "Messages and conversations"},
            {"name": "realtime", "description": "The WebSocket"},
            {"name": "meta", "description": "About this API"},
            {"name": "operations", "description": "Health and metrics"},
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": _error_responses(refs[api.HttpError]),
            "headers": {
                name: {"description": text, "schema": schema}
                for name, (text, schema) in HEADERS.items()
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "HS256 token with the claims `sub` (user id), `tenant` "
                        "and `exp`; the tenant is never taken from a request"
                    ),
                }
            },
        },
    }


def dump(document: dict[str, Any]) -> str:
    """The canonical text of a generated document (sorted keys, 2 spaces)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@cache
def encoded() -> bytes:
    return dump(document()).encode()
