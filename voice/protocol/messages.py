"""Typed JSON payloads of HELLO, READY, CONTROL and EVENT frames (protocol v1).

One class per message, a literal `type` tag, a discriminated union to parse. Parsing turns
every failure into a ProtocolError with a short message a client developer can act on:
BAD_JSON when the bytes are not JSON (or nest deeper than MAX_JSON_DEPTH, or hold a number out
of float range), BAD_MESSAGE when the JSON has the wrong shape or a string holds a lone
surrogate ("invalid unicode"): see safe_json.py.
Unknown keys are ignored everywhere so that a newer peer can add fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError as Invalid  # its type string picks our error code

from voice.protocol.errors import ErrorCode, ProtocolError
from voice.protocol.frames import DEFAULT_MAX_PAYLOAD_BYTES, PROTOCOL_VERSION
from voice.protocol.safe_json import JsonSyntaxError, JsonUnicodeError, load_json

Codec = Literal["opus", "pcm16"]
#: Opus encodes and decodes only at these rates.
OPUS_SAMPLE_RATES_HZ: tuple[int, ...] = (8000, 12000, 16000, 24000, 48000)
#: Inclusive range of PCM16 sample rates a peer may ask for.
PCM16_SAMPLE_RATE_RANGE_HZ: tuple[int, int] = (8000, 48000)
#: Largest integer a position field may carry (the frame header's u64 timestamp range).
U64_MAX = 2**64 - 1
_T = TypeVar("_T")
Payload = bytes | bytearray | memoryview


class _Message(BaseModel):
    # strict: a wire protocol must not read "48000" or true as a number.
    model_config = ConfigDict(strict=True, extra="ignore")


# ---------------------------------------------------------------- handshake
class OutputFormat(_Message):
    """Audio format of one direction; sample_rate in Hz."""

    codec: Codec = "opus"
    sample_rate: int = 48000

    @field_validator("codec", mode="before")
    @classmethod
    def _codec_is_supported(cls, value: Any) -> Any:
        # A codec name we do not know gets its own error code, not a generic BAD_MESSAGE.
        if isinstance(value, str) and value not in get_args(Codec):
            raise Invalid("unsupported_codec", f"unsupported codec {value!r}, use 'opus' or 'pcm16'")
        return value

    @field_validator("sample_rate")
    @classmethod
    def _rate_fits_codec(cls, value: int, info: ValidationInfo) -> int:
        codec = info.data.get("codec")  # absent when the codec itself was refused
        if codec == "opus" and value not in OPUS_SAMPLE_RATES_HZ:
            rates = ", ".join(map(str, OPUS_SAMPLE_RATES_HZ))
            raise Invalid("bad_sample_rate", f"opus sample_rate must be one of {rates}, got {value}")
        low, high = PCM16_SAMPLE_RATE_RANGE_HZ
        if codec == "pcm16" and not low <= value <= high:
            raise Invalid("bad_sample_rate", f"pcm16 sample_rate must be {low}..{high}, got {value}")
        return value


class InputFormat(OutputFormat):
    """Format of the client's microphone stream. Only mono is supported."""

    channels: int = 1

    @field_validator("channels")
    @classmethod
    def _mono_only(cls, value: int) -> int:
        if value != 1:
            raise Invalid("bad_channels", f"only mono is supported (channels 1), got {value}")
        return value


class Hello(_Message):
    """First frame a client sends. The server compares `version` to PROTOCOL_VERSION."""

    version: int = Field(gt=0)
    token: str | None = None
    input: InputFormat = Field(default_factory=InputFormat)
    output: OutputFormat = Field(default_factory=OutputFormat)
    #: Free-form session options: agent name, VAD overrides, language...
    options: dict[str, Any] = Field(default_factory=dict)
    client: str | None = None


class Limits(_Message):
    """What the server enforces on this session."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    idle_timeout_s: float = 60.0


class Ready(_Message):
    """Server's answer to HELLO: the effective formats, limits and options of the session."""

    version: int = PROTOCOL_VERSION
    session_id: str
    input: InputFormat
    output: OutputFormat
    frame_ms: int = 20
    limits: Limits = Field(default_factory=Limits)
    server: str
    options: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- CONTROL (client -> server)
class Interrupt(_Message):
    """The user pressed stop: the server stops the agent's reply."""

    type: Literal["interrupt"] = "interrupt"


class PlaybackMark(_Message):
    """How many output samples (at the output rate) the client has actually played."""

    type: Literal["playback_mark"] = "playback_mark"
    # u64 like the header's timestamp: a bigger int would overflow float arithmetic downstream
    played_samples: int = Field(ge=0, le=U64_MAX)
    segment: int | None = Field(default=None, ge=0, le=U64_MAX)


class EndOfInput(_Message):
    """No more audio will come: flush the utterance, send its final transcript, then input_ended."""

    type: Literal["end_of_input"] = "end_of_input"


class ConfigUpdate(_Message):
    """Change session options mid-session; the server answers with a session_options event."""

    type: Literal["config"] = "config"
    options: dict[str, Any]


class TextInput(_Message):
    """A typed user turn."""

    type: Literal["text"] = "text"
    text: str


class Dtmf(_Message):
    """Keypad digits."""

    type: Literal["dtmf"] = "dtmf"
    digits: str = Field(pattern=r"^[0-9*#A-D]+$")


Control = Annotated[
    Interrupt | PlaybackMark | EndOfInput | ConfigUpdate | TextInput | Dtmf, Field(discriminator="type")
]
_CONTROL: TypeAdapter[Control] = TypeAdapter(Control)


# ---------------------------------------------------------------- EVENT (server -> client)
class _Event(_Message):
    #: Server time since session start, ms. Omitted from the JSON when None.
    t_ms: float | None = None


class SpeechStarted(_Event):
    """VAD heard speech begin; at_ms is the position in the input stream."""

    type: Literal["speech_started"] = "speech_started"
    utterance: int
    at_ms: float


class SpeechStopped(_Event):
    """VAD heard speech end; at_ms is the position in the input stream."""

    type: Literal["speech_stopped"] = "speech_stopped"
    utterance: int
    at_ms: float


class TranscriptPartial(_Event):
    """Running hypothesis; stable_text is the prefix that will not change any more."""

    type: Literal["transcript_partial"] = "transcript_partial"
    utterance: int
    text: str
    stable_text: str


class TranscriptFinal(_Event):
    """Final transcript of one utterance; start_ms/end_ms are input stream positions."""

    type: Literal["transcript_final"] = "transcript_final"
    utterance: int
    text: str
    start_ms: float
    end_ms: float
    language: str | None = None
    #: The earlier utterance this one continues (decoded together with it): the user went on after
    #: a pause that had ended the turn. Its text covers both; clients may merge the two.
    continues: int | None = None


class InputEnded(_Event):
    """Answer to end_of_input, sent after the last final transcript."""

    type: Literal["input_ended"] = "input_ended"


class SessionOptions(_Event):
    """The effective session options after a config control."""

    type: Literal["session_options"] = "session_options"
    options: dict[str, Any]


class AgentText(_Event):
    """Text of the agent's reply in turn `turn`, streamed; final marks the last piece."""

    type: Literal["agent_text"] = "agent_text"
    turn: int
    text: str
    final: bool


class ToolCall(_Event):
    """The agent called a tool."""

    type: Literal["tool_call"] = "tool_call"
    turn: int
    id: str
    name: str
    arguments: dict[str, Any]


class ToolResult(_Event):
    """What a tool call returned."""

    type: Literal["tool_result"] = "tool_result"
    turn: int
    id: str
    ok: bool
    result: Any


class StateChanged(_Event):
    """The dialogue state machine moved."""

    type: Literal["state_changed"] = "state_changed"
    state: str
    slots: dict[str, Any]


class TurnMetrics(_Event):
    """Latency of each pipeline stage of one turn, ms."""

    type: Literal["turn_metrics"] = "turn_metrics"
    turn: int
    stages_ms: dict[str, float]


class Interrupted(_Event):
    """The agent's reply was cut after played_ms of audio had been played; heard_text is the part
    of its text that audio carried (whole words), which is what the conversation history keeps."""

    type: Literal["interrupted"] = "interrupted"
    turn: int
    played_ms: float
    heard_text: str = ""
    #: barge_in (the user spoke), client (an interrupt control), text / dtmf (a typed turn), continuation
    #: (the user went on with the turn before the reply was heard), call_end (the agent ends the call).
    reason: str = "barge_in"


class EndOfTurn(_Event):
    """The end-of-turn decision on an utterance, in its silence: complete (the turn ends after
    wait_ms of silence) or not (the server listens on, up to the maximum silence)."""

    type: Literal["end_of_turn"] = "end_of_turn"
    utterance: int
    complete: bool
    probability: float
    wait_ms: float
    reason: str
    audio_probability: float | None = None


class Backchannel(_Event):
    """The user spoke over the agent without taking the turn ("mm-hmm", a cough); the reply went on
    (resumed: its audio had been paused meanwhile)."""

    type: Literal["backchannel"] = "backchannel"
    utterance: int
    text: str
    resumed: bool


class CallEnding(_Event):
    """The agent ends the call (reason: hang_up, goodbye, no_response, max_duration); BYE follows."""

    type: Literal["call_ending"] = "call_ending"
    reason: str


class GenericEvent(_Event):
    """An event type this version does not know; its other fields are in `model_extra`."""

    model_config = ConfigDict(extra="allow")
    type: str


Event = Annotated[
    SpeechStarted
    | SpeechStopped
    | TranscriptPartial
    | TranscriptFinal
    | InputEnded
    | SessionOptions
    | AgentText
    | ToolCall
    | ToolResult
    | StateChanged
    | TurnMetrics
    | Interrupted
    | EndOfTurn
    | Backchannel
    | CallEnding,
    Field(discriminator="type"),
]
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def _tags(union: Any) -> tuple[str, ...]:
    members = get_args(get_args(union)[0])
    return tuple(member.model_fields["type"].default for member in members)


CONTROL_TYPES: tuple[str, ...] = _tags(Control)
EVENT_TYPES: tuple[str, ...] = _tags(Event)
#: Each event's class by its type tag (a door maps the pipeline's records to these).
EVENT_MODELS: dict[str, type[_Event]] = {m.model_fields["type"].default: m for m in get_args(get_args(Event)[0])}


# ---------------------------------------------------------------- parse / encode
def _load_object(payload: Payload, what: str) -> dict[str, Any]:
    try:
        value = load_json(payload)  # bounded depth, finite numbers, no lone surrogates
    except JsonSyntaxError as error:
        raise ProtocolError(ErrorCode.BAD_JSON, f"{what}: {error}") from None
    except JsonUnicodeError as error:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what}: {error}") from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what}: expected an object, got {type(value).__name__}")
    return value


def _readable(error: ValidationError, what: str) -> ProtocolError:
    """The first validation problem as one line, not pydantic's multi-line dump."""
    problems = error.errors(include_url=False)
    first = problems[0]
    if first["type"] == "union_tag_invalid":
        text = f"unknown type {first['ctx']['tag']!r}"
    elif first["type"] == "union_tag_not_found":
        text = "missing 'type'"
    else:
        where = ".".join(str(part) for part in first["loc"])
        text = f"{where}: {first['msg']}" if where else first["msg"]
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    code = ErrorCode.UNSUPPORTED_CODEC if first["type"] == "unsupported_codec" else ErrorCode.BAD_MESSAGE
    return ProtocolError(code, f"{what}: {text}")


def _parse(validate: Callable[[dict[str, Any]], _T], payload: Payload, what: str) -> _T:
    data = _load_object(payload, what)
    try:
        return validate(data)
    except ValidationError as error:
        raise _readable(error, what) from None


def parse_hello(payload: Payload) -> Hello:
    """HELLO payload -> Hello. Raises ProtocolError (BAD_JSON, BAD_MESSAGE, UNSUPPORTED_CODEC)."""
    return _parse(Hello.model_validate, payload, "HELLO")


def parse_ready(payload: Payload) -> Ready:
    """READY payload -> Ready (client side)."""
    return _parse(Ready.model_validate, payload, "READY")


def parse_control(payload: Payload) -> Control:
    """CONTROL payload -> one of the Control models; an unknown type is BAD_MESSAGE."""
    return _parse(_CONTROL.validate_python, payload, "CONTROL")


def _typed_or_generic(data: dict[str, Any]) -> Event | GenericEvent:
    # A client must keep working when a newer server adds event types.
    if data.get("type") in EVENT_TYPES:
        return _EVENT.validate_python(data)
    return GenericEvent.model_validate(data)


def parse_event(payload: Payload) -> Event | GenericEvent:
    """EVENT payload -> typed event, or GenericEvent for a type this version does not know."""
    return _parse(_typed_or_generic, payload, "EVENT")


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def encode_hello(hello: Hello) -> bytes:
    """HELLO payload: compact UTF-8 JSON, keys in field order."""
    return _dumps(hello.model_dump(mode="json"))


def encode_ready(ready: Ready) -> bytes:
    """READY payload: compact UTF-8 JSON, keys in field order."""
    return _dumps(ready.model_dump(mode="json"))


def encode_control(control: Control) -> bytes:
    """CONTROL payload: compact UTF-8 JSON, "type" first."""
    return _dumps(control.model_dump(mode="json"))


def encode_event(event: Event | GenericEvent) -> bytes:
    """EVENT payload: "type" first, then the fields, then "t_ms" when set."""
    data = event.model_dump(mode="json")
    t_ms = data.pop("t_ms", None)
    ordered = {"type": data.pop("type"), **data}
    if t_ms is not None:
        ordered["t_ms"] = t_ms
    return _dumps(ordered)
