"""Per-session options: what a client may set for its call (HELLO options, later config updates).

Every door validates through `resolve_options`, so a setting means the same on every door.
Known keys: "vad", "barge_in", "turn", "call" (objects merged over the server's defaults),
"agent" and "profile". Unknown keys are kept (a newer client may send them) and echoed back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from voice.agents import check_agent_options
from voice.asr.endpointing import TurnDetectionSettings
from voice.asr.vad import VadSettings
from voice.pipeline.settings import BargeInSettings, CallSettings

if TYPE_CHECKING:
    from voice.config import Settings


class OptionsError(ValueError):
    """Options a session cannot have; the message names the key and why (for the client)."""


@dataclass(frozen=True)
class CallOptions:
    """The effective options of one session."""

    vad: VadSettings
    barge_in: BargeInSettings
    turn: TurnDetectionSettings
    call: CallSettings
    agent: str
    profile: dict[str, Any]
    extra: dict[str, Any]  # keys this server does not know, kept for the client
    call_requested: dict[str, Any]  # "call" as the client gave it (the agent's own go under it)

    def as_dict(self) -> dict[str, Any]:
        """What READY and session_options show the client."""
        known = {name: getattr(self, name).model_dump(mode="json") for name in _MODELS}
        return {**self.extra, **known, "agent": self.agent, "profile": self.profile}


_MODELS: dict[str, type[BaseModel]] = {"vad": VadSettings, "barge_in": BargeInSettings,
                                       "turn": TurnDetectionSettings, "call": CallSettings}


def resolve_options(requested: dict[str, Any], settings: Settings, current: CallOptions | None = None) -> CallOptions:
    """Validate `requested` over the server defaults (or over `current`, for a mid-session update).
    Raises OptionsError with a one-line reason."""
    from voice.config import describe_validation_error

    if not isinstance(requested, dict):
        raise OptionsError("options must be an object")
    base = _defaults(settings) if current is None else {n: getattr(current, n) for n in _MODELS}
    parsed: dict[str, Any] = {}
    for name, model in _MODELS.items():
        given = requested.get(name, {})
        if not isinstance(given, dict):
            raise OptionsError(f"options.{name} must be an object")
        try:
            parsed[name] = model.model_validate(base[name].model_dump() | given)
        except ValidationError as e:
            raise OptionsError(f"options.{name}: {describe_validation_error(e)}") from None
    agent_default = current.agent if current else settings.agents.default
    try:
        picked = check_agent_options({"profile": current.profile} | requested if current else requested,
                                     agent_default)
    except ValueError as e:
        raise OptionsError(str(e)) from None
    if current is not None and picked["agent"] != current.agent:
        raise OptionsError("options.agent cannot change during a session")
    extra = {k: v for k, v in requested.items() if k not in (*_MODELS, "agent", "profile")}
    if current is not None:
        extra = current.extra | extra
    call_requested = (current.call_requested if current else {}) | requested.get("call", {})
    return CallOptions(**parsed, agent=picked["agent"], profile=picked["profile"], extra=extra,
                       call_requested=call_requested)


def _defaults(settings: Settings) -> dict[str, BaseModel]:
    return {"vad": settings.vad.defaults, "barge_in": settings.agent.barge_in,
            "turn": settings.turn.defaults, "call": settings.agent.call}


def turn_settings_in_state(turn: TurnDetectionSettings, state: Any) -> TurnDetectionSettings:
    """A session's end-of-turn settings with a flow state's `turn:` overrides (its set fields)."""
    if state is None:
        return turn
    return turn.model_copy(update={k: v for k, v in state.model_dump().items() if v is not None})


def effective_vad(options: CallOptions, turn: TurnDetectionSettings, *, smart: bool,
                  agent_speaking: bool) -> VadSettings:
    """The VAD settings a call runs with now. Smart end of turn: the VAD's end-of-turn silence is the
    turn's maximum (the detector ends complete turns sooner); a fixed silence: the turn's, if set.
    While the agent speaks on a client with echo "raise", a higher threshold keeps its echo out."""
    vad = options.vad
    if turn.mode == "smart" and smart:
        vad = vad.model_copy(update={"min_silence_ms": turn.effective_max_silence_ms})
    elif turn.max_silence_ms is not None:
        vad = vad.model_copy(update={"min_silence_ms": turn.max_silence_ms})
    if agent_speaking and options.barge_in.echo == "raise":
        vad = vad.model_copy(update={"threshold": max(vad.threshold, options.barge_in.raised_threshold),
                                     "neg_threshold": None})
    return vad
