"""Conversation items (messages, function calls and their outputs), responses and their usage,
and error details, as Realtime events carry them both ways."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationInfo, field_serializer, field_validator, model_validator
from pydantic_core import PydanticCustomError

from voice.doors.realtime_wire.base import MAX_ID_CHARS, MAX_LIST, Part, audio_limit, b64_bytes, b64_text, new_id
from voice.doors.realtime_wire.session import (
    BETA_RESPONSE_AUDIO,
    AudioFormat,
    FunctionTool,
    MaxTokens,
    Modality,
    ToolChoice,
    ga_from_beta,
    one_modality,
)


# ---------------------------------------------------------------- conversation items
class InputText(Part):
    type: Literal["input_text"] = "input_text"
    text: str


class _AudioPart(Part):
    audio: bytes | None = None  # in the session's input format; base64 on the wire
    transcript: str | None = None

    @field_validator("audio", mode="before")
    @classmethod
    def _from_base64(cls, value: Any, info: ValidationInfo) -> Any:
        return value if value is None else b64_bytes(value, audio_limit(info))

    @field_serializer("audio")
    def _to_base64(self, value: bytes | None) -> str | None:
        return None if value is None else b64_text(value)


class InputAudio(_AudioPart):
    type: Literal["input_audio"] = "input_audio"


class OutputText(Part):
    type: Literal["output_text", "text"] = "output_text"  # "text": beta
    text: str

    _ga_name = field_validator("type")(lambda value: "output_text")


class OutputAudio(_AudioPart):
    type: Literal["output_audio", "audio"] = "output_audio"  # "audio": beta

    _ga_name = field_validator("type")(lambda value: "output_audio")


Content = Annotated[InputText | InputAudio | OutputText | OutputAudio, Field(discriminator="type")]
_ROLE_CONTENT = {"user": {"input_text", "input_audio"}, "system": {"input_text"},
                 "assistant": {"output_text", "output_audio"}}


class _Item(Part):
    id: str | None = Field(None, max_length=MAX_ID_CHARS)
    object: Literal["realtime.item"] | None = "realtime.item"
    status: Literal["completed", "incomplete", "in_progress"] | None = "completed"


class MessageItem(_Item):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system"]
    content: list[Content] = Field(max_length=MAX_LIST)

    @field_validator("content")
    @classmethod
    def _fits_role(cls, content: list[Any], info: ValidationInfo) -> list[Any]:
        role = info.data.get("role")  # absent when the role itself was refused
        for index, part in enumerate(content):
            if role is not None and part.type not in _ROLE_CONTENT[role]:
                raise PydanticCustomError("content_role", "content[{index}] of type {kind} has no place in a "
                                          "{role} message", {"index": index, "kind": part.type, "role": role})
        return content


class FunctionCallItem(_Item):
    type: Literal["function_call"] = "function_call"
    call_id: str | None = Field(None, max_length=MAX_ID_CHARS)
    name: str
    arguments: str  # JSON text, as the model wrote it


class FunctionCallOutputItem(_Item):
    type: Literal["function_call_output"] = "function_call_output"
    call_id: str = Field(max_length=MAX_ID_CHARS)
    output: str


class ItemReference(Part):
    """An existing item, by id, as response.create's `input` may name it."""

    type: Literal["item_reference"] = "item_reference"
    id: str = Field(max_length=MAX_ID_CHARS)


Item = Annotated[MessageItem | FunctionCallItem | FunctionCallOutputItem, Field(discriminator="type")]
ResponseInput = Annotated[MessageItem | FunctionCallItem | FunctionCallOutputItem | ItemReference,
                          Field(discriminator="type")]


# ---------------------------------------------------------------- responses
class ResponseAudioOutput(Part):
    format: AudioFormat | None = None
    voice: str | None = Field(None, max_length=64)


class ResponseAudio(Part):
    output: ResponseAudioOutput = Field(default_factory=ResponseAudioOutput)


_MetadataKey = Annotated[str, StringConstraints(max_length=64)]
_MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class ResponseParams(Part):
    """response.create's overrides; None: the session's setting. conversation "none": out of band,
    `input` replaces the conversation as the model's context."""

    instructions: str | None = None
    tools: list[FunctionTool] | None = Field(None, max_length=MAX_LIST)
    tool_choice: ToolChoice | None = None
    output_modalities: list[Modality] | None = None
    max_output_tokens: MaxTokens | None = None
    audio: ResponseAudio | None = None
    conversation: Literal["auto", "none"] = "auto"
    input: list[ResponseInput] | None = Field(None, max_length=MAX_LIST)
    metadata: dict[_MetadataKey, _MetadataValue] | None = Field(None, max_length=16)

    _from_beta = model_validator(mode="before")(lambda data: ga_from_beta(data, BETA_RESPONSE_AUDIO))
    _one_modality = field_validator("output_modalities")(one_modality)


class StatusError(Part):
    type: str
    code: str | None = None
    message: str | None = None


class TranscriptionError(StatusError):
    param: str | None = None


class StatusDetails(Part):
    """Why a response ended other than completed (cancelled: `turn_detected`/`client_cancelled`)."""

    type: Literal["completed", "cancelled", "incomplete", "failed"]
    reason: Literal["turn_detected", "client_cancelled", "max_output_tokens", "content_filter"] | None = None
    error: StatusError | None = None


class CachedTokenDetails(Part):
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0


class InputTokenDetails(Part):
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0
    cached_tokens: int = 0
    cached_tokens_details: CachedTokenDetails = Field(default_factory=CachedTokenDetails)


class OutputTokenDetails(Part):
    text_tokens: int = 0
    audio_tokens: int = 0


class Usage(Part):
    """Tokens of one response, counted by our own tokenizers (audio: the ASR's and TTS's tokens)."""

    total_tokens: int
    input_tokens: int
    output_tokens: int
    input_token_details: InputTokenDetails
    output_token_details: OutputTokenDetails

    @classmethod
    def of(cls, input_text: int, input_audio: int, output_text: int, output_audio: int) -> Usage:
        inputs, outputs = input_text + input_audio, output_text + output_audio
        return cls(total_tokens=inputs + outputs, input_tokens=inputs, output_tokens=outputs,
                   input_token_details=InputTokenDetails(text_tokens=input_text, audio_tokens=input_audio),
                   output_token_details=OutputTokenDetails(text_tokens=output_text, audio_tokens=output_audio))


class Response(Part):
    id: str = Field(default_factory=lambda: new_id("resp"))
    object: Literal["realtime.response"] = "realtime.response"
    status: Literal["in_progress", "completed", "cancelled", "incomplete", "failed"] = "in_progress"
    status_details: StatusDetails | None = None
    output: list[Item] = Field(default_factory=list)
    conversation_id: str | None = None  # None: an out-of-band response
    output_modalities: list[Modality] = Field(default_factory=lambda: ["audio"])
    max_output_tokens: MaxTokens = "inf"
    audio: ResponseAudio | None = None
    usage: Usage | None = None
    metadata: dict[str, str] | None = None  # echoed from response.create


class TranscriptionDuration(Part):
    """Input transcription measured by audio length, s (what our ASR reports)."""

    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionTokenDetails(Part):
    text_tokens: int = 0
    audio_tokens: int = 0


class TranscriptionTokens(Part):
    """Input transcription measured in tokens (OpenAI's transcription models)."""

    type: Literal["tokens"] = "tokens"
    total_tokens: int
    input_tokens: int
    output_tokens: int
    input_token_details: TranscriptionTokenDetails | None = None


TranscriptionUsage = Annotated[TranscriptionDuration | TranscriptionTokens, Field(discriminator="type")]


class ErrorDetail(Part):
    type: str = "invalid_request_error"
    code: str | None = None
    message: str
    param: str | None = None
    event_id: str | None = None  # the client event this answers
