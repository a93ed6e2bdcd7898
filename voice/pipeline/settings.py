"""Turn-taking settings of a call: barge-in and backchannels, continuation, the call's lifecycle.

Each has server defaults (voice.config, `[agent.*]`), may be set per agent (its YAML `call:` block)
and per session (HELLO options `barge_in`, `call`). Times in ms or s as their names say.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: What a listener says to show they follow, not to take the turn (compared lower-case, without
#: punctuation). "yes"/"no" are not here: over the end of a question they are the answer.
BACKCHANNELS = (
    "mm", "mhm", "mm hmm", "mmhmm", "mm-hmm", "hmm", "uh huh", "uh-huh", "yeah", "yep", "okay", "ok",
    "right", "alright", "all right", "sure", "i see", "got it", "oh", "ah", "wow", "cool", "great", "nice",
    "exactly", "true", "indeed", "of course", "go on",
)


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BargeInSettings(_Settings):
    """How the user may interrupt the agent. Per session: HELLO options "barge_in"."""

    enabled: bool = True
    min_speech_ms: float = Field(300.0, ge=0)
    """User speech this long over the agent stops its audio (paused, or cut when resume is off)."""
    resume: bool = True
    """Pause first and find out: a backchannel ("mm-hmm") or a noise (no words) resumes the reply
    where it stopped; words that are not a backchannel cut it. False: cut at min_speech_ms."""
    decide_after_ms: float = Field(1000.0, ge=0)
    """Speech over the agent this long is an interruption even before its words are known."""
    answer_within_ms: float = Field(1500.0, ge=0)
    """A backchannel word when less than this much of the reply is left is an answer (to the
    question the reply ends with), so it takes the turn."""
    backchannels: tuple[str, ...] = BACKCHANNELS
    #: Clients without echo cancellation (CLI on speakers, phones) hear the agent in their mic:
    #: "aec" = the client cancels echo (browsers); "raise" = higher VAD threshold while the agent
    #: speaks; "gate" = ignore the mic while the agent speaks (no barge-in).
    echo: str = Field("aec", pattern="^(aec|raise|gate)$")
    raised_threshold: float = Field(0.85, gt=0, lt=1)


class ContinuationSettings(_Settings):
    """The user goes on after a pause that ended the turn, before the reply was heard: same turn."""

    enabled: bool = True
    window_ms: float = Field(3000.0, ge=0)
    """Speech that starts this soon after the user's last words may continue their turn: a pause
    (up to ~2.5 s: the VAD reports speech min_speech_ms in, and word edges are soft), not an answer
    to the agent (that comes later: the agent must have spoken for a while first)."""
    max_heard_ms: float = Field(1500.0, ge=0)
    """...as long as the client has played no more than this of the reply (a few words: the user
    was not listening to it, they were finishing their sentence)."""


class CallSettings(_Settings):
    """The call's lifecycle: who speaks first, silence, how it ends. Per agent (YAML `call:`) and per
    session (HELLO options "call")."""

    greeting: str | None = None
    """Said when the call starts (the agent speaks first); None: the agent's own, "" : none."""
    reprompt_after_s: float | None = Field(12.0, gt=0)
    """User silence this long after the agent finished speaking gets a re-prompt; None: never."""
    reprompt_line: str = "Are you still there?"
    max_reprompts: int = Field(2, ge=0)
    """Re-prompts in a row without an answer; the next silence ends the call."""
    no_response_line: str = "I haven't heard from you, so I'll end the call now. Goodbye!"
    max_call_s: float | None = Field(1800.0, gt=0)
    """The call ends after this long (with max_call_line); None: no limit."""
    max_call_line: str = "We have reached the time limit for this call. Thank you, goodbye!"
    answer_turns: bool = True
    """Answer each user turn when it ends. False: only when asked (Realtime `create_response: false`,
    or no server turn detection)."""
    record: bool | None = None
    """Record this call (voice/pipeline/recording.py; needs `agent.recording.folder`); None: the
    server's `agent.recording.enabled`."""
    hang_up_tool: bool = True
    """Offer the agent a `hang_up` tool to end the call when the caller is done."""
    end_grace_ms: float = Field(300.0, ge=0)
    """After the last words, time for the client to play its buffer before the call ends."""
