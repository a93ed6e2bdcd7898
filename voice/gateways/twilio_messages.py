"""Twilio Media Streams JSON: the one parser and encoder of its WebSocket text messages.

Twilio (and Telnyx, which copies it) sends `connected`, `start`, `media`, `dtmf`, `mark` and
`stop`; a bidirectional stream answers with `media`, `mark` and `clear`
(https://www.twilio.com/docs/voice/media-streams/websocket-messages; golden copies of the
documented examples are in tests/golden/twilio/). One class per message, a literal `event` tag,
a discriminated union to parse, like voice/protocol/messages.py.

`parse_twilio` turns every failure into one `TwilioMessageError` with a short reason: not JSON
(or nested too deep, a lone surrogate: voice/protocol/safe_json.py), not an object, no `event`,
or a known event of the wrong shape (`media` as a string, `dtmf` as a number, a payload that is
not base64). An event this version does not know parses as `UnknownEvent`, to be ignored. Unknown
keys are ignored everywhere. Twilio writes numbers such as `sequenceNumber` and `chunk` as
strings; they are kept as the strings they are.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
)
from pydantic_core import PydanticCustomError

from voice.protocol.safe_json import JsonSyntaxError, JsonUnicodeError, load_json

#: The one format Twilio streams: G.711 μ-law, 8 kHz, mono.
MULAW_ENCODING = "audio/x-mulaw"
MULAW_RATE_HZ = 8000
#: Largest μ-law payload one media message may carry: 1 s at 8 kHz (Twilio sends 20 ms).
MAX_MEDIA_BYTES = 8000


class TwilioMessageError(ValueError):
    """A Media Streams message we cannot use; `reason` is one short line for the log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Part(BaseModel):
    # strict: "8000" is not a sample rate, 1 is not a digit
    model_config = ConfigDict(strict=True, extra="ignore")


class _Message(_Part):
    streamSid: str | None = None  # Twilio's camelCase names, kept as on the wire
    sequenceNumber: str | int | None = None  # a string from Twilio, a number from some clones


# ---------------------------------------------------------------- Twilio -> us
class Connected(_Message):
    """First message of a stream: the protocol it will speak."""

    event: Literal["connected"] = "connected"
    protocol: str = "Call"
    version: str = ""


class MediaFormat(_Part):
    encoding: str = MULAW_ENCODING
    sampleRate: int = MULAW_RATE_HZ
    channels: int = 1

    @property
    def is_mulaw_8k_mono(self) -> bool:
        return (self.encoding, self.sampleRate, self.channels) == (MULAW_ENCODING, MULAW_RATE_HZ, 1)


class StartInfo(_Part):
    streamSid: str = ""
    accountSid: str = ""
    callSid: str = ""
    tracks: list[str] = Field(default_factory=lambda: ["inbound"])
    customParameters: dict[str, str] = Field(default_factory=dict)
    mediaFormat: MediaFormat = Field(default_factory=MediaFormat)


class Start(_Message):
    """Stream metadata, once, right after `connected`."""

    event: Literal["start"] = "start"
    start: StartInfo

    @property
    def stream_sid(self) -> str:
        """Twilio repeats the stream SID at the top level and inside `start`."""
        return self.streamSid or self.start.streamSid


class MediaPayload(_Part):
    """`payload` is the audio itself (μ-law bytes), base64 only on the wire."""

    payload: bytes = Field(max_length=MAX_MEDIA_BYTES)
    track: str | None = None      # inbound: "inbound" / "outbound"; absent in what we send
    chunk: str | int | None = None
    timestamp: str | int | None = None  # ms since the stream started (Twilio: a string)

    @field_validator("payload", mode="before")
    @classmethod
    def _from_base64(cls, value: Any) -> Any:
        if isinstance(value, bytes):
            return value  # built in Python (outbound); JSON can only bring a str
        if not isinstance(value, str):
            raise PydanticCustomError("payload_type", "payload must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
            raise PydanticCustomError("payload_base64", "payload is not valid base64") from None

    @field_serializer("payload")
    def _to_base64(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")


class Media(_Message):
    """Audio, both ways: `media.payload` holds 20 ms of μ-law (160 bytes) from Twilio."""

    event: Literal["media"] = "media"
    media: MediaPayload

    @property
    def inbound(self) -> bool:
        """Caller audio (the only track a bidirectional stream sends us)."""
        return self.media.track in (None, "inbound", "inbound_track")


class DtmfInfo(_Part):
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$")
    track: str = "inbound_track"


class Dtmf(_Message):
    """One key press on the caller's keypad."""

    event: Literal["dtmf"] = "dtmf"
    dtmf: DtmfInfo


class MarkInfo(_Part):
    name: str = Field(max_length=256)


class Mark(_Message):
    """Both ways: we send a named mark after audio; Twilio echoes it when that audio has played
    (or was cleared)."""

    event: Literal["mark"] = "mark"
    mark: MarkInfo


class StopInfo(_Part):
    accountSid: str = ""
    callSid: str = ""


class Stop(_Message):
    """The stream ended (the call hung up, or <Stream> was stopped)."""

    event: Literal["stop"] = "stop"
    stop: StopInfo = Field(default_factory=StopInfo)


# ---------------------------------------------------------------- us -> Twilio
class Clear(_Message):
    """Drop every queued media message (barge-in); Twilio then echoes the pending marks."""

    event: Literal["clear"] = "clear"


class UnknownEvent(_Part):
    """An event this version does not know (Telnyx's `error`, a future one): ignore it."""

    model_config = ConfigDict(strict=True, extra="allow")
    event: str


TwilioMessage = Annotated[Connected | Start | Media | Dtmf | Mark | Stop | Clear, Field(discriminator="event")]
_MESSAGE: TypeAdapter[TwilioMessage] = TypeAdapter(TwilioMessage)
KNOWN_EVENTS: frozenset[str] = frozenset(
    member.model_fields["event"].default for member in (Connected, Start, Media, Dtmf, Mark, Stop, Clear)
)


def parse_twilio(raw: str | bytes) -> TwilioMessage | UnknownEvent:
    """One WebSocket message -> a typed message. Raises TwilioMessageError, nothing else."""
    if not isinstance(raw, str):
        raise TwilioMessageError("binary message; Media Streams messages are JSON text")
    try:
        data = load_json(raw)
    except JsonSyntaxError as e:
        raise TwilioMessageError(f"not JSON: {e}") from None
    except JsonUnicodeError as e:
        raise TwilioMessageError(str(e)) from None
    if not isinstance(data, dict):
        raise TwilioMessageError(f"expected a JSON object, got {type(data).__name__}")
    event = data.get("event")
    if not isinstance(event, str):
        raise TwilioMessageError("missing 'event'" if event is None else "'event' must be a string")
    try:
        if event not in KNOWN_EVENTS:
            return UnknownEvent.model_validate(data)
        return _MESSAGE.validate_python(data)
    except ValidationError as e:
        raise TwilioMessageError(f"{event} message: {_first_problem(e)}") from None


def _first_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"][1:])  # loc[0] is the union's tag
    return f"{where}: {first['msg']}" if where else first["msg"]


def encode_twilio(message: TwilioMessage) -> str:
    """Compact JSON text for one message, "event" first; fields left None are omitted."""
    data = message.model_dump(mode="json", exclude_none=True)
    return json.dumps({"event": data.pop("event"), **data}, separators=(",", ":"))


def media_message(stream_sid: str, mulaw: bytes) -> str:
    """Outbound audio: μ-law bytes (8 kHz mono) for the caller to hear."""
    return encode_twilio(Media(streamSid=stream_sid, media=MediaPayload(payload=mulaw)))


def mark_message(stream_sid: str, name: str) -> str:
    """Outbound mark: Twilio echoes `name` once the audio sent before it has played."""
    return encode_twilio(Mark(streamSid=stream_sid, mark=MarkInfo(name=name)))


def clear_message(stream_sid: str) -> str:
    """Outbound clear: stop playing everything sent so far."""
    return encode_twilio(Clear(streamSid=stream_sid))
