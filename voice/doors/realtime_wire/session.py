"""The Realtime session object: audio formats, turn detection, tools, modalities. Parsed from a
client's session.update and echoed whole in session.created/updated, so one class serves both ways:
unset fields hold the API's documented defaults and `model_fields_set` tells what a client sent
(`apply_session_update`). Beta's flat fields are mapped to GA first (`ga_from_beta`): a flat
`input_audio_format: "pcm16"` becomes `audio.input.format: {type: "audio/pcm", rate: 24000}`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from voice.doors.realtime_wire.base import MAX_LIST, Part


# ---------------------------------------------------------------- audio formats
class PcmFormat(Part):
    """16-bit little-endian mono PCM; the API supports 24 kHz only."""

    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = 24000


class PcmuFormat(Part):
    """G.711 μ-law, 8 kHz."""

    type: Literal["audio/pcmu"] = "audio/pcmu"


class PcmaFormat(Part):
    """G.711 A-law, 8 kHz."""

    type: Literal["audio/pcma"] = "audio/pcma"


AudioFormat = Annotated[PcmFormat | PcmuFormat | PcmaFormat, Field(discriminator="type")]
#: Beta format names -> GA format objects.
BETA_FORMATS: dict[str, dict[str, Any]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000}, "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}


# ---------------------------------------------------------------- session
class ServerVad(Part):
    """End of turn after `silence_duration_ms` of silence (the API's defaults)."""

    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0, le=1)
    prefix_padding_ms: int = Field(300, ge=0, le=10_000)
    silence_duration_ms: int = Field(500, ge=0, le=10_000)
    idle_timeout_ms: int | None = Field(None, ge=0, le=600_000)
    create_response: bool = True
    interrupt_response: bool = True


class SemanticVad(Part):
    """End of turn when the words sound finished; `eagerness` trades latency for patience."""

    type: Literal["semantic_vad"] = "semantic_vad"
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class Transcription(Part):
    """Input transcription settings; the server's own ASR does the work, `model` is echoed."""

    model: str | None = Field(None, max_length=128)
    language: str | None = Field(None, max_length=32)
    prompt: str | None = None


def without_nulls(data: Any, keep: frozenset[str] = frozenset()) -> Any:
    """A client's `null` for a setting that cannot be off means "leave it as it is" (clients
    built on the SDK's models send unset options as null); only the `keep` ones turn off."""
    if not isinstance(data, dict):
        return data
    return {key: value for key, value in data.items() if value is not None or key in keep}


class AudioInput(Part):
    format: AudioFormat = Field(default_factory=PcmFormat)
    transcription: Transcription | None = None  # null: off
    turn_detection: TurnDetection | None = Field(default_factory=ServerVad)  # null: off, the client commits

    _nulls = model_validator(mode="before")(lambda data: without_nulls(data, frozenset({"transcription",
                                                                                        "turn_detection"})))


class AudioOutput(Part):
    format: AudioFormat = Field(default_factory=PcmFormat)
    voice: str | None = Field(None, max_length=64)
    speed: float = Field(1.0, ge=0.25, le=1.5)

    _nulls = model_validator(mode="before")(without_nulls)


class AudioConfig(Part):
    input: AudioInput = Field(default_factory=AudioInput)
    output: AudioOutput = Field(default_factory=AudioOutput)

    _nulls = model_validator(mode="before")(without_nulls)


class FunctionTool(Part):
    type: Literal["function"] = "function"
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)  # a JSON Schema


class ToolChoiceFunction(Part):
    type: Literal["function"] = "function"
    name: str


def _choice_kind(value: Any) -> str:
    return "function" if isinstance(value, dict | ToolChoiceFunction) else "mode"


ToolChoice = Annotated[
    Annotated[Literal["auto", "none", "required"], Tag("mode")] | Annotated[ToolChoiceFunction, Tag("function")],
    Discriminator(_choice_kind),
]
Modality = Literal["text", "audio"]


def _max_tokens(value: Any) -> Any:
    if value == "inf" or (type(value) is int and 1 <= value <= 4096):
        return value
    raise PydanticCustomError("max_tokens", "expected an integer 1..4096 or 'inf'")


MaxTokens = Annotated[int | Literal["inf"], BeforeValidator(_max_tokens)]


def one_modality(value: list[str] | None) -> list[str] | None:
    """The API answers in audio (with its transcript) or in text, never both: beta's
    ["text", "audio"] means audio."""
    if value is None:
        return None
    if not value:
        raise PydanticCustomError("modalities", "expected ['audio'] or ['text']")
    return ["audio"] if "audio" in value else ["text"]


_BETA_RENAMES = {"modalities": "output_modalities", "max_response_output_tokens": "max_output_tokens"}
_BETA_SESSION_AUDIO = {
    "input_audio_format": ("input", "format"), "output_audio_format": ("output", "format"),
    "turn_detection": ("input", "turn_detection"), "input_audio_transcription": ("input", "transcription"),
    "voice": ("output", "voice"), "speed": ("output", "speed"),
}
BETA_RESPONSE_AUDIO = {"output_audio_format": ("output", "format"), "voice": ("output", "voice")}


def ga_from_beta(data: Any, audio_keys: dict[str, tuple[str, str]] = _BETA_SESSION_AUDIO) -> Any:
    """A beta session/response object in GA shape; GA keys win where a client sent both."""
    if not isinstance(data, dict) or not data.keys() & (_BETA_RENAMES.keys() | audio_keys.keys()):
        return data
    data = dict(data)
    for old, new in _BETA_RENAMES.items():
        if old in data:
            data.setdefault(new, data.pop(old))
    audio = data.get("audio", {})
    if not isinstance(audio, dict):
        return data  # refused as it is by validation
    audio = {side: dict(part) if isinstance(part, dict) else part for side, part in audio.items()}
    for old, (side, key) in audio_keys.items():
        if old not in data:
            continue
        value = data.pop(old)
        if old.endswith("_format") and isinstance(value, str):
            value = BETA_FORMATS.get(value, {"type": value})
        if old == "turn_detection" and isinstance(value, dict):
            value = {"type": "server_vad", **value}  # beta's type was optional
        if isinstance(audio.setdefault(side, {}), dict):
            audio[side].setdefault(key, value)
    data["audio"] = audio
    return data


class Session(Part):
    """The session's configuration. `id`, `object` and `expires_at` are set by the server."""

    type: Literal["realtime"] = "realtime"
    object: Literal["realtime.session"] | None = None
    id: str | None = None
    model: str | None = Field(None, max_length=128)
    instructions: str = ""
    output_modalities: list[Modality] = Field(default_factory=lambda: ["audio"])
    tools: list[FunctionTool] = Field(default_factory=list, max_length=MAX_LIST)
    tool_choice: ToolChoice = "auto"
    max_output_tokens: MaxTokens = "inf"
    audio: AudioConfig = Field(default_factory=AudioConfig)
    expires_at: int | None = None  # unix time, s

    _from_beta = model_validator(mode="before")(lambda data: without_nulls(ga_from_beta(data)))
    _one_modality = field_validator("output_modalities")(one_modality)


_SERVER_SET = frozenset({"object", "id", "expires_at"})
_MERGED = (AudioConfig, AudioInput, AudioOutput)


def apply_session_update(current: Session, update: Session) -> Session:
    """session.update semantics: only what the client sent changes; `audio`, `audio.input` and
    `audio.output` merge field by field, anything else (a format, turn_detection) is replaced whole."""
    return _merged(current, update)


def _merged(current: BaseModel, update: BaseModel) -> Any:
    changes = {}
    for name in update.model_fields_set - _SERVER_SET:
        new, old = getattr(update, name), getattr(current, name)
        changes[name] = _merged(old, new) if isinstance(new, _MERGED) and type(old) is type(new) else new
    return current.model_copy(update=changes)
