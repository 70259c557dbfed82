"""OpenTelemetry tracing, with W3C trace context carried in NATS headers.

Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set,
and to a JSON-lines file when ``MSG_TRACE_FILE`` is set (used by tests and
local debugging). With neither (and no ``OTEL_TRACES_SAMPLER``), tracing is
off: ``span`` hands out a shared no-op span and ``inject``/``extract`` do
nothing, so a send costs no tracing CPU in any service. Code always goes
through ``span``, ``inject`` and ``extract``, never the OpenTelemetry API
directly, so that switch holds everywhere.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)

_propagator = TraceContextTextMapPropagator()
_enabled = False  # set by setup() when spans have somewhere to go
_OFF = contextlib.nullcontext(trace.INVALID_SPAN)


class _HeaderGetter(Getter[Mapping[str, str]]):
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


class _HeaderSetter(Setter[MutableMapping[str, str]]):
    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        carrier[key] = value


_getter = _HeaderGetter()
_setter = _HeaderSetter()


def inject(
    headers: MutableMapping[str, str], context: otel_context.Context | None = None
) -> MutableMapping[str, str]:
    """Add a ``traceparent`` to outgoing NATS headers: the current span's, or
    the span in ``context`` when given (a consumer's span for one event)."""
    if _enabled:
        _propagator.inject(headers, context=context, setter=_setter)
    return headers


def extract(headers: Mapping[str, str] | None) -> otel_context.Context | None:
    """The remote parent context carried by incoming NATS headers, if any."""
    if not _enabled:
        return None
    return _propagator.extract(headers or {}, getter=_getter)


def span(
    tracer: trace.Tracer,
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> AbstractContextManager[trace.Span]:
    """A span made current for the block; its parent comes from incoming
    ``parent`` headers when given, else from the current context."""
    if not _enabled:
        return _OFF
    return tracer.start_as_current_span(
        name,
        context=None if parent is None else extract(parent),
        kind=kind,
        attributes=attributes,
    )


def detached_span(
    tracer: trace.Tracer,
    name: str,
    *,
    parent: Mapping[str, str] | None,
    kind: trace.SpanKind,
    attributes: Mapping[str, str | int] | None = None,
) -> trace.Span:
    """A span the caller ends itself (one per event of a consumer batch)."""
    if not _enabled:
        return trace.INVALID_SPAN
    return tracer.start_span(
        name, context=extract(parent), kind=kind, attributes=attributes
    )


class JsonLinesExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line.

    Several processes may share the file (the test stack does): each batch
    is one ``write`` on an ``O_APPEND`` descriptor, so lines from different
    processes never interleave.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(span.to_json(indent=None) + "\n" for span in spans).encode()
        with self._lock:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        if written != len(data):  # a full disk; the rest of the batch is lost
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def setup(service: str, instance: str, otlp_endpoint: str = "") -> TracerProvider:
    """Install the global tracer provider for this process (entry points only)."""
    resource = Resource.create(
        {"service.name": service, "service.instance.id": instance}
    )
    global _enabled
    trace_file = os.environ.get("MSG_TRACE_FILE")
    _enabled = bool(
        otlp_endpoint or trace_file or os.environ.get("OTEL_TRACES_SAMPLER")
    )
    provider = TracerProvider(resource=resource)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        endpoint = otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
        )
    if trace_file:
        provider.add_span_processor(
            BatchSpanProcessor(JsonLinesExporter(trace_file), schedule_delay_millis=200)
        )
    trace.set_tracer_provider(provider)
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)
