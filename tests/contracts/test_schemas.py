"""contracts/ is generated from the code and must match it."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from libs.schema import export
from libs.schema.events import Event, MessageAccepted

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"


def test_generated_contracts_are_current() -> None:
    stale = export.stale(CONTRACTS, export.render())
    stale += export.stale(ROOT / "infra", export.render_infra())

    assert stale == [], f"run `msgctl contracts` and commit: {stale}"


def test_event_schema_describes_the_envelope() -> None:
    schema = json.loads(
        (CONTRACTS / "schemas/events/message.accepted.json").read_text()
    )
    accepted = schema["$defs"]["MessageAccepted"]

    assert set(accepted["required"]) >= {"type", "id", "tenant", "time", "data"}
    assert accepted["properties"]["type"]["enum"] == ["message.accepted"]
    assert "version" in accepted["properties"]


def test_events_round_trip_through_the_union() -> None:
    raw = (
        b'{"type":"message.accepted","id":"m1","tenant":"acme",'
        b'"time":"2026-01-01T00:00:00Z","version":1,"data":{"id":"m1",'
        b'"conversation_id":"c1","sender_id":"alice","body":"hi",'
        b'"created_at":"2026-01-01T00:00:00Z"}}'
    )

    event = msgspec.json.decode(raw, type=Event)

    assert isinstance(event, MessageAccepted)
    assert event.data.body == "hi"
    assert msgspec.json.decode(msgspec.json.encode(event), type=Event) == event
