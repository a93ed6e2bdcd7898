"""Realtime server events: one class per event (every one gets an `event_id`), and `encode`, their
only way onto the wire. Field names and types follow openai-python's `openai.types.realtime`
server events; tests/unit/test_realtime_wire.py validates what `encode` writes with the SDK's own
models. `encode(event, beta=True)` writes the beta names of the renamed events.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, field_serializer, field_validator

from voice.doors.realtime_wire.base import MAX_APPEND_AUDIO_BYTES, Part, RealtimeWireError, b64_bytes, b64_text, new_id
from voice.doors.realtime_wire.items import ErrorDetail, Item, Response, TranscriptionError, TranscriptionUsage
from voice.doors.realtime_wire.session import Session


class _ServerEvent(Part):
    event_id: str = Field(default_factory=lambda: new_id("event"))


class SessionCreated(_ServerEvent):
    type: Literal["session.created"] = "session.created"
    session: Session


class SessionUpdated(_ServerEvent):
    type: Literal["session.updated"] = "session.updated"
    session: Session


class InputAudioBufferSpeechStarted(_ServerEvent):
    """`audio_start_ms`: from the start of the session's input audio."""

    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class InputAudioBufferSpeechStopped(_ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class InputAudioBufferCommitted(_ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


class InputAudioBufferCleared(_ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class _ItemPlaced(_ServerEvent):
    item: Item
    previous_item_id: str | None = None


class ConversationItemAdded(_ItemPlaced):
    type: Literal["conversation.item.added"] = "conversation.item.added"


class ConversationItemDone(_ItemPlaced):
    type: Literal["conversation.item.done"] = "conversation.item.done"


class ConversationItemRetrieved(_ServerEvent):
    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: Item


class _OfItem(_ServerEvent):
    item_id: str


class InputAudioTranscriptionDelta(_OfItem):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta")
    content_index: int = 0
    delta: str


class InputAudioTranscriptionCompleted(_OfItem):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed")
    content_index: int = 0
    transcript: str
    usage: TranscriptionUsage


class InputAudioTranscriptionFailed(_OfItem):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed")
    content_index: int = 0
    error: TranscriptionError


class ConversationItemTruncated(_OfItem):
    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    content_index: int
    audio_end_ms: int


class ConversationItemDeleted(_OfItem):
    type: Literal["conversation.item.deleted"] = "conversation.item.deleted"


class ResponseCreated(_ServerEvent):
    type: Literal["response.created"] = "response.created"
    response: Response


class ResponseDone(_ServerEvent):
    type: Literal["response.done"] = "response.done"
    response: Response


class _OutputItem(_ServerEvent):
    response_id: str
    output_index: int
    item: Item


class ResponseOutputItemAdded(_OutputItem):
    type: Literal["response.output_item.added"] = "response.output_item.added"


class ResponseOutputItemDone(_OutputItem):
    type: Literal["response.output_item.done"] = "response.output_item.done"


class ContentPart(Part):
    """A part as response.content_part.* carry it: `type` is "audio" or "text" there."""

    type: Literal["audio", "text"]
    text: str | None = None
    transcript: str | None = None


class _OfContent(_ServerEvent):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


class ResponseContentPartAdded(_OfContent):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    part: ContentPart


class ResponseContentPartDone(_OfContent):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    part: ContentPart


class ResponseOutputAudioDelta(_OfContent):
    """`delta`: audio in the session's output format (base64 on the wire)."""

    type: Literal["response.output_audio.delta"] = "response.output_audio.delta"
    delta: bytes

    @field_validator("delta", mode="before")
    @classmethod
    def _from_base64(cls, value: Any) -> Any:
        return b64_bytes(value, MAX_APPEND_AUDIO_BYTES)

    @field_serializer("delta")
    def _to_base64(self, value: bytes) -> str:
        return b64_text(value)


class ResponseOutputAudioDone(_OfContent):
    type: Literal["response.output_audio.done"] = "response.output_audio.done"


class ResponseOutputAudioTranscriptDelta(_OfContent):
    type: Literal["response.output_audio_transcript.delta"] = "response.output_audio_transcript.delta"
    delta: str


class ResponseOutputAudioTranscriptDone(_OfContent):
    type: Literal["response.output_audio_transcript.done"] = "response.output_audio_transcript.done"
    transcript: str


class ResponseOutputTextDelta(_OfContent):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str


class ResponseOutputTextDone(_OfContent):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    text: str


class _OfCall(_ServerEvent):
    response_id: str
    item_id: str
    output_index: int = 0
    call_id: str


class ResponseFunctionCallArgumentsDelta(_OfCall):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    delta: str


class ResponseFunctionCallArgumentsDone(_OfCall):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    name: str
    arguments: str


class OutputAudioBufferCleared(_ServerEvent):
    type: Literal["output_audio_buffer.cleared"] = "output_audio_buffer.cleared"
    response_id: str


class RateLimit(Part):
    name: Literal["requests", "tokens"]
    limit: int
    remaining: int
    reset_seconds: float


class RateLimitsUpdated(_ServerEvent):
    type: Literal["rate_limits.updated"] = "rate_limits.updated"
    rate_limits: list[RateLimit]


class Error(_ServerEvent):
    """Something the client sent (or the server) went wrong; the session stays open."""

    type: Literal["error"] = "error"
    error: ErrorDetail


ServerEvent = Annotated[
    SessionCreated | SessionUpdated | InputAudioBufferSpeechStarted | InputAudioBufferSpeechStopped
    | InputAudioBufferCommitted | InputAudioBufferCleared | ConversationItemAdded | ConversationItemDone
    | ConversationItemRetrieved | InputAudioTranscriptionDelta | InputAudioTranscriptionCompleted
    | InputAudioTranscriptionFailed | ConversationItemTruncated | ConversationItemDeleted | ResponseCreated
    | ResponseDone | ResponseOutputItemAdded | ResponseOutputItemDone | ResponseContentPartAdded
    | ResponseContentPartDone | ResponseOutputAudioDelta | ResponseOutputAudioDone
    | ResponseOutputAudioTranscriptDelta | ResponseOutputAudioTranscriptDone | ResponseOutputTextDelta
    | ResponseOutputTextDone | ResponseFunctionCallArgumentsDelta | ResponseFunctionCallArgumentsDone
    | OutputAudioBufferCleared | RateLimitsUpdated | Error,
    Field(discriminator="type"),
]
SERVER_EVENT: TypeAdapter[ServerEvent] = TypeAdapter(ServerEvent)

#: GA server event name -> the beta name a beta client listens for.
BETA_NAMES: dict[str, str] = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}


#: GA content part type -> beta's.
BETA_CONTENT_TYPES: dict[str, str] = {"output_text": "text", "output_audio": "audio"}


def encode(event: ServerEvent, *, beta: bool = False) -> str:
    """Compact JSON text for one server event, `type` and `event_id` first; fields left None are
    written as null, as the API does. `beta`: beta's event names and assistant content types
    (the session and response objects keep their GA shape)."""
    data = event.model_dump(mode="json")
    kind = data.pop("type")
    head = {"type": BETA_NAMES.get(kind, kind) if beta else kind, "event_id": data.pop("event_id")}
    if beta and isinstance(event, _ItemPlaced | ConversationItemRetrieved | _OutputItem | ResponseDone):
        _to_beta_content(data)
    return json.dumps({**head, **data}, separators=(",", ":"))


def _to_beta_content(value: Any) -> None:
    if isinstance(value, dict):
        if value.get("type") in BETA_CONTENT_TYPES:
            value["type"] = BETA_CONTENT_TYPES[value["type"]]
        for inner in value.values():
            _to_beta_content(inner)
    elif isinstance(value, list):
        for inner in value:
            _to_beta_content(inner)


def wire_error_event(error: RealtimeWireError) -> Error:
    """The `error` event answering a refused client event."""
    return error_event(error.code, error.message, error.event_id, error.param)


def error_event(code: str, message: str, event_id: str | None = None, param: str | None = None,
                kind: str = "invalid_request_error") -> Error:
    """An `error` event; `event_id` names the client event it answers."""
    return Error(error=ErrorDetail(type=kind, code=code, message=message, param=param, event_id=event_id))
