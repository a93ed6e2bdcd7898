"""Realtime client events: one class per event, a literal `type` tag, and `parse_client_event`,
which turns every failure into one RealtimeWireError carrying the Realtime error code to send back:
invalid_json (not JSON, nested too deep, a lone surrogate: voice/protocol/safe_json.py),
invalid_event (not an object; no `type`), unknown_event, missing_required_parameter, invalid_value
(wrong type, out of range, bad base64, too much audio). `param` names the field as OpenAI does
(`session.tools[0].name`); `event_id` is the client's, so the client can match the error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_serializer, field_validator

from voice.doors.realtime_wire.base import (
    MAX_APPEND_AUDIO_BYTES,
    MAX_ID_CHARS,
    Part,
    RealtimeWireError,
    b64_bytes,
    b64_text,
)
from voice.doors.realtime_wire.items import Item, ResponseParams
from voice.doors.realtime_wire.session import Session
from voice.protocol.safe_json import JsonSyntaxError, JsonUnicodeError, load_json

#: Longest client `event_id` accepted (and echoed back in an error).
MAX_EVENT_ID_CHARS = 512


class _ClientEvent(Part):
    event_id: str | None = Field(None, max_length=MAX_EVENT_ID_CHARS)


class SessionUpdate(_ClientEvent):
    """Change the session; only the fields present change (`apply_session_update`)."""

    type: Literal["session.update"] = "session.update"
    session: Session


class InputAudioBufferAppend(_ClientEvent):
    """Audio in the session's input format; `audio` holds the decoded bytes (base64 on the wire)."""

    type: Literal["input_audio_buffer.append"] = "input_audio_buffer.append"
    audio: bytes

    @field_validator("audio", mode="before")
    @classmethod
    def _from_base64(cls, value: Any, info: ValidationInfo) -> Any:
        limit = (info.context or {}).get("max_audio_bytes", MAX_APPEND_AUDIO_BYTES)
        return b64_bytes(value, limit)

    @field_serializer("audio")
    def _to_base64(self, value: bytes) -> str:
        return b64_text(value)


class InputAudioBufferCommit(_ClientEvent):
    """Turn the buffered audio into a user item (turn detection off, or to force it)."""

    type: Literal["input_audio_buffer.commit"] = "input_audio_buffer.commit"


class InputAudioBufferClear(_ClientEvent):
    type: Literal["input_audio_buffer.clear"] = "input_audio_buffer.clear"


class ConversationItemCreate(_ClientEvent):
    """Add an item: typed user text, a system note, a function result; after `previous_item_id`
    (None: at the end, "root": at the start)."""

    type: Literal["conversation.item.create"] = "conversation.item.create"
    item: Item
    previous_item_id: str | None = Field(None, max_length=MAX_ID_CHARS)


class ConversationItemRetrieve(_ClientEvent):
    type: Literal["conversation.item.retrieve"] = "conversation.item.retrieve"
    item_id: str = Field(max_length=MAX_ID_CHARS)


class ConversationItemTruncate(_ClientEvent):
    """The client played only `audio_end_ms` of an assistant item: forget the rest."""

    type: Literal["conversation.item.truncate"] = "conversation.item.truncate"
    item_id: str = Field(max_length=MAX_ID_CHARS)
    content_index: int = Field(ge=0, le=1000)
    audio_end_ms: int = Field(ge=0, le=2**31)


class ConversationItemDelete(_ClientEvent):
    type: Literal["conversation.item.delete"] = "conversation.item.delete"
    item_id: str = Field(max_length=MAX_ID_CHARS)


class ResponseCreate(_ClientEvent):
    """Answer now; `response` overrides the session's settings for this response only."""

    type: Literal["response.create"] = "response.create"
    response: ResponseParams = Field(default_factory=ResponseParams)


class ResponseCancel(_ClientEvent):
    type: Literal["response.cancel"] = "response.cancel"
    response_id: str | None = Field(None, max_length=MAX_ID_CHARS)


class OutputAudioBufferClear(_ClientEvent):
    """Stop the audio already sent (WebRTC/SIP in OpenAI's API; here: the same as a cut)."""

    type: Literal["output_audio_buffer.clear"] = "output_audio_buffer.clear"


ClientEvent = (SessionUpdate | InputAudioBufferAppend | InputAudioBufferCommit | InputAudioBufferClear
               | ConversationItemCreate | ConversationItemRetrieve | ConversationItemTruncate
               | ConversationItemDelete | ResponseCreate | ResponseCancel | OutputAudioBufferClear)
CLIENT_EVENTS: dict[str, type[_ClientEvent]] = {
    cls.model_fields["type"].default: cls
    for cls in (SessionUpdate, InputAudioBufferAppend, InputAudioBufferCommit, InputAudioBufferClear,
                ConversationItemCreate, ConversationItemRetrieve, ConversationItemTruncate,
                ConversationItemDelete, ResponseCreate, ResponseCancel, OutputAudioBufferClear)
}


def parse_client_event(raw: str | bytes, *, max_audio_bytes: int = MAX_APPEND_AUDIO_BYTES) -> ClientEvent:
    """One WebSocket message -> a typed client event. Raises RealtimeWireError, nothing else.

    `max_audio_bytes` bounds one append's decoded audio (default: the API's 15 MiB)."""
    try:
        data = load_json(raw)
    except (JsonSyntaxError, JsonUnicodeError) as e:
        raise RealtimeWireError("invalid_json", f"Invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RealtimeWireError("invalid_event", f"An event must be a JSON object, got {_json_type(data)}.")
    event_id = data.get("event_id")
    event_id = event_id if isinstance(event_id, str) and len(event_id) <= MAX_EVENT_ID_CHARS else None
    kind = data.get("type")
    if not isinstance(kind, str):
        message = "The 'type' field is missing." if kind is None else "The 'type' field must be a string."
        raise RealtimeWireError("invalid_event", message, event_id, "type")
    event_class = CLIENT_EVENTS.get(kind)
    if event_class is None:
        known = ", ".join(CLIENT_EVENTS)
        message = f"Unknown event type {kind[:80]!r}; supported: {known}."
        raise RealtimeWireError("unknown_event", message, event_id, "type")
    try:
        return event_class.model_validate(data, context={"max_audio_bytes": max_audio_bytes})
    except ValidationError as e:
        raise _wire_error(e, data, event_id) from None


def _wire_error(error: ValidationError, data: dict, event_id: str | None) -> RealtimeWireError:
    first = error.errors(include_url=False)[0]
    param = _param(first["loc"], data)
    if first["type"] in ("missing", "union_tag_not_found"):
        param += ".type" if first["type"] == "union_tag_not_found" else ""
        return RealtimeWireError("missing_required_parameter", f"Missing required parameter: '{param}'.", event_id,
                                 param)
    if first["type"] == "union_tag_invalid":
        param += ".type"
    return RealtimeWireError("invalid_value", f"Invalid value for '{param}': {first['msg']}.", event_id, param)


def _param(loc: tuple[Any, ...], data: Any) -> str:
    """A pydantic error location as OpenAI writes a param (`session.tools[0].name`). Tagged unions
    add their tag to the location: dropped where the input holds it as its `type`, or where the
    location goes on below a value that has no fields (a union branch's label)."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue  # the tag of a discriminated union, not a key
        if node is not None and not isinstance(node, dict | list):
            break  # below a scalar: a union branch's label
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return "".join(parts).lstrip(".")


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
