"""WebSocket frames: ``{"event": ..., "data": ...}`` in both directions.

These structs describe the frames for the contracts; the gateway encodes
``messages:new`` once per message with ``libs.delivery.encode_frame`` and a
test checks that what it writes decodes as ``MessageNewFrame``.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from libs.schema.api import Message
from libs.schema.events import PresenceData
from libs.schema.types import UserId


class _Frame(Struct, tag_field="event", kw_only=True):
    pass


class ReadyData(Struct, kw_only=True):
    user_id: UserId


class PongData(Struct, kw_only=True):
    at: Annotated[float, Meta(description="Server time, Unix seconds")]


class AuthOkData(Struct, kw_only=True):
    expires_at: Annotated[float, Meta(description="The new token's exp")]


class FrameError(Struct, kw_only=True):
    code: str
    message: str


class AuthData(Struct, kw_only=True):
    token: Annotated[str, Meta(description="A client token (JWT)")]


class ReadyFrame(_Frame, tag="ready"):
    """Live delivery has started (after any replay asked for by ``since_seq``)."""

    data: ReadyData


class MessageNewFrame(_Frame, tag="messages:new"):
    """A message of one of your conversations, as the POST answered it."""

    data: Message


class PresenceUpdateFrame(_Frame, tag="presence:update"):
    """A user of your tenant went online or offline."""

    data: PresenceData


class PongFrame(_Frame, tag="pong"):
    data: PongData


class AuthOkFrame(_Frame, tag="auth:ok"):
    """A refreshed token was accepted; the socket now lives until its exp."""

    data: AuthOkData


class ErrorFrame(_Frame, tag="error"):
    """A client frame was not understood, or a refresh token was refused."""

    data: FrameError


class PingFrame(_Frame, tag="ping"):
    """Client to server: answered with ``pong``."""


class AuthFrame(_Frame, tag="auth"):
    """Client to server: the first frame of a browser, or a token refresh."""

    data: AuthData


# What fanout publishes on delivery subjects and gateways forward unchanged.
DeliveredFrame = MessageNewFrame | PresenceUpdateFrame
ServerFrame = (
    ReadyFrame
    | MessageNewFrame
    | PresenceUpdateFrame
    | PongFrame
    | AuthOkFrame
    | ErrorFrame
)
ClientFrame = PingFrame | AuthFrame
