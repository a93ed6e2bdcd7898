"""Opening a call: everything one session needs, built the same way for every door.

`open_call` builds the agent (its flow, tools, memory), the ears (Listener over the shared VAD and
Whisper engines), the end-of-turn detector, the reply speaker (TTS -> AudioOut in the door's output
format -> Pacer) and the turn controller that ties them together; the door then feeds audio and
input events in and sends what comes out of `controller.outbox`.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from voice.agents import build_agent
from voice.asr.endpointing import EndOfTurnDetector
from voice.asr.listener import Listener
from voice.llm.tools import Tool, tool
from voice.pipeline.audio_out import AudioOut, OutCodec
from voice.pipeline.events import ReplyFinished
from voice.pipeline.options import CallOptions
from voice.pipeline.recording import CallRecorder, RecordingSettings
from voice.pipeline.settings import CallSettings
from voice.pipeline.speaker import ReplySpeaker
from voice.pipeline.turns import HangUp, TurnController

if TYPE_CHECKING:
    from voice.config import Settings
    from voice.pipeline.engines import Engines

HANG_UP_TRIGGERS = ("bye", "goodbye", "good bye", "hang up", "end the call", "that's all", "that is all",
                    "nothing else")


def hang_up_tool(flag: HangUp) -> Tool:
    """The agent's way to end the call; it ends once the reply with the goodbye has been said."""

    @tool(triggers=HANG_UP_TRIGGERS)
    async def hang_up() -> str:
        """End the phone call. Use it only when the user says goodbye or asks to end the call."""
        flag.requested = True
        return "The call will end after your reply: say a short goodbye."

    return hang_up


async def open_call(settings: Settings, engines: Engines, options: CallOptions, *, session_id: str,
                    output_codec: OutCodec, output_rate_hz: int) -> TurnController:
    """A ready turn controller for one session (start it with `controller.run()`)."""
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    llm_cfg = settings.llm
    agent = await build_agent(options.agent, engines.llm, settings.agents, llm_cfg.generation_options(),
                              session_id=session_id, system_prompt=llm_cfg.system_prompt, profile=options.profile)
    options = _with_agent_call(options, settings, agent.flow.spec.call if agent.flow else {})
    hang_up = HangUp()
    if options.call.hang_up_tool:
        agent.toolbox.add(hang_up_tool(hang_up))
    listener = Listener(engines.vad, engines.asr, options.vad, settings.asr.streaming, events=inbox)
    speaker = ReplySpeaker(agent, engines.tts, AudioOut(output_codec, output_rate_hz), outbox.put_nowait,
                           chunker=settings.tts.chunker,
                           on_finished=lambda turn, done: inbox.put_nowait(ReplyFinished(turn, done)))
    detector = EndOfTurnDetector(engines.turn, options.turn)
    for event in agent.state_events():  # where the agent's flow starts
        outbox.put_nowait(event)
    return TurnController(session_id, listener, speaker, options, inbox=inbox, outbox=outbox, detector=detector,
                          preemptive_reply=settings.agent.preemptive_reply,
                          continuation=settings.agent.continuation, hang_up=hang_up,
                          recorder=_recorder(settings.agent.recording, options.call.record, session_id))


def _recorder(settings: RecordingSettings, record: bool | None, session_id: str) -> CallRecorder | None:
    """A recorder when this call is recorded: the server's setting, or the agent's / session's
    `call.record` where the server has a folder for recordings."""
    wanted = settings.enabled if record is None else record
    if not wanted or settings.folder is None:
        return None
    return CallRecorder(settings.model_copy(update={"enabled": True}), session_id)


def _with_agent_call(options: CallOptions, settings: Settings, agent_call: dict[str, Any]) -> CallOptions:
    """The call settings with the agent's own (its YAML `call:`) between the server's and the
    session's: server defaults < agent < what the client asked for."""
    merged = settings.agent.call.model_dump() | agent_call | options.call_requested
    return replace(options, call=CallSettings.model_validate(merged))
