"""The turn controller's vocabulary: typed events in (from the ears and from the door) and out.

Every record is plain data that knows no wire. A door (our binary protocol, Twilio, the OpenAI
Realtime API) turns what it receives into the input records and maps the output records to its own
messages; `type` is the name the binary protocol uses for the event that carries it.

In:  the Listener's events (voice.asr.listener: speech started/stopped, partial / early / final
     transcript, early dropped), the door's (UserText, UserDtmf, PlaybackMark, StopRequest,
     EndOfInput, OptionsChanged), and the controller's own (TurnVerdictReady, ReplyFinished,
     TimerFired), all through one queue, handled one at a time.
Out: OutFrame (voice.pipeline.audio_out: 20 ms of the agent's audio), the Listener's speech and
     transcript events, the agent's (voice.llm.events: tool calls, results, state changes) and the
     records below, through one queue, in the order they happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from voice.asr.listener import (
    EarlyDropped,
    EarlyTranscript,
    FinalTranscript,
    PartialTranscript,
    SpeechStarted,
    SpeechStopped,
)
from voice.llm.events import StateChanged, ToolFinished, ToolStarted
from voice.pipeline.audio_out import OutFrame

# ---------------------------------------------------------------- in, from the door


@dataclass(frozen=True)
class UserText:
    """A typed user turn."""

    text: str


@dataclass(frozen=True)
class UserDtmf:
    """Keypad digits (a user turn: the agent says what they mean in the current state)."""

    digits: str


@dataclass(frozen=True)
class PlaybackMark:
    """The client has played this many output samples (at the output rate) of the agent's audio."""

    played_samples: int


@dataclass(frozen=True)
class StopRequest:
    """The client asks the agent to stop talking (a stop button, Realtime `response.cancel`)."""

    reason: str = "client"


@dataclass(frozen=True)
class EndOfInput:
    """No more audio will come (the door has flushed the ears): say input_ended when all is done."""


@dataclass(frozen=True)
class RespondRequest:
    """Answer now (Realtime `response.create`): `text` is a new user turn, or None to answer the
    conversation as it stands; `audio` False: text only."""

    text: str | None = None
    audio: bool = True


@dataclass(frozen=True)
class CommitInput:
    """The client ends its input turn itself (Realtime `input_audio_buffer.commit`, no server VAD);
    the ears have been flushed, so every final of it came before this."""


@dataclass(frozen=True)
class TruncateReply:
    """The client played only `played_ms` of the last reply (Realtime `conversation.item.truncate`)."""

    played_ms: float


@dataclass(frozen=True)
class OptionsChanged:
    """New session options (already validated by voice.pipeline.options)."""

    options: Any


# ---------------------------------------------------------------- in, from the controller itself


@dataclass(frozen=True)
class TurnVerdictReady:
    """The end-of-turn detector's verdict on utterance `utterance`, judged on its early text."""

    utterance: int
    verdict: Any  # voice.asr.endpointing.TurnVerdict
    epoch: int    # the controller's count of early transcripts: a verdict on an older one is stale


@dataclass(frozen=True)
class ReplyFinished:
    """Reply `turn` ended: played to its end (`completed`), or cut."""

    turn: int
    completed: bool


@dataclass(frozen=True)
class TimerFired:
    """A timer of the controller went off: "end_turn", "overlap", "silence", "max_call"."""

    name: str
    token: int  # the controller's arming count: a timer armed before a later re-arm is stale


# ---------------------------------------------------------------- out


@dataclass(frozen=True)
class AgentText:
    """Text of the agent's reply `turn`, streamed; `final` marks the whole reply's text."""

    type: ClassVar[str] = "agent_text"
    turn: int
    text: str
    final: bool


@dataclass(frozen=True)
class Interrupted:
    """Reply `turn` was cut after `played_ms` of its audio was played; `heard_text` is what that
    audio carried (the history keeps it). `reason`: barge_in, client, text, dtmf, continuation."""

    type: ClassVar[str] = "interrupted"
    turn: int
    played_ms: float
    heard_text: str = ""
    reason: str = "barge_in"


@dataclass(frozen=True)
class TurnMetricsReport:
    """Latency of each stage of one turn, ms after the end of the user's speech."""

    type: ClassVar[str] = "turn_metrics"
    turn: int
    stages_ms: dict[str, float]


@dataclass(frozen=True)
class EndOfTurn:
    """The end-of-turn decision on an utterance: complete (the turn ends after `wait_ms` of
    silence) or not (listening on, up to the maximum silence), and why."""

    type: ClassVar[str] = "end_of_turn"
    utterance: int
    complete: bool
    probability: float
    wait_ms: float
    reason: str
    audio_probability: float | None = None


@dataclass(frozen=True)
class Backchannel:
    """The user spoke over the agent without taking the turn ("mm-hmm", a cough): the reply
    went on (`resumed`: it had been paused while that was being found out)."""

    type: ClassVar[str] = "backchannel"
    utterance: int
    text: str
    resumed: bool


@dataclass(frozen=True)
class CallEnding:
    """The agent ends the call (`reason`: hang_up, goodbye, no_response, max_duration); the door
    closes the connection (SIP BYE, Twilio stream end) once this has been sent."""

    type: ClassVar[str] = "call_ending"
    reason: str


@dataclass(frozen=True)
class ReplyEnded:
    """Reply `turn` is over: played to its end (`completed`), or cut (an `interrupted` came first)."""

    type: ClassVar[str] = "reply_ended"
    turn: int
    completed: bool


@dataclass(frozen=True)
class InputCommitted:
    """The client's committed input turn is complete: every final of it was sent before this."""

    type: ClassVar[str] = "input_committed"


@dataclass(frozen=True)
class InputEnded:
    """Everything the client's input caused is done (its last final and the reply to it)."""

    type: ClassVar[str] = "input_ended"


@dataclass(frozen=True)
class SessionOptions:
    """The effective session options after a change."""

    type: ClassVar[str] = "session_options"
    options: dict[str, Any] = field(default_factory=dict)


ListenerEvent = SpeechStarted | SpeechStopped | PartialTranscript | FinalTranscript | EarlyTranscript | EarlyDropped
DoorEvent = (UserText | UserDtmf | PlaybackMark | StopRequest | EndOfInput | OptionsChanged | RespondRequest
             | CommitInput | TruncateReply)
InEvent = ListenerEvent | DoorEvent | TurnVerdictReady | ReplyFinished | TimerFired
OutEvent = (OutFrame | SpeechStarted | SpeechStopped | PartialTranscript | FinalTranscript | AgentText
            | ToolStarted | ToolFinished | StateChanged | Interrupted | TurnMetricsReport | EndOfTurn | Backchannel
            | CallEnding | InputEnded | SessionOptions | ReplyEnded | InputCommitted)
