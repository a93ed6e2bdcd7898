"""One connection's whole story: handshake, audio in -> ears -> events out, controls, goodbye.

A Session owns the per-call state (audio decoder, listener, conversation, sequence numbers, error
budget). It reads frames in one task and handles the listener's events in another, so a slow
Whisper decode never stops audio intake. The agent's replies live in the Conversation; the session
decides when the user takes the turn (final transcript, typed text) and when they barge in.
Protocol errors after READY are answered with ERROR and the session goes on; fatal ones (and every
error during the handshake) close the connection with the error's code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import time
import uuid
from typing import Any

from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voice import __version__, metrics
from voice.agents import build_agent, check_agent_options
from voice.asr.listener import (
    EarlyDropped,
    EarlyTranscript,
    FinalTranscript,
    Listener,
    PartialTranscript,
    SpeechStarted,
    SpeechStopped,
)
from voice.asr.vad import VadSettings
from voice.codecs import BadAudio
from voice.config import Settings, describe_validation_error
from voice.pipeline.audio_in import AudioInput
from voice.pipeline.audio_out import AudioOut, OutFrame
from voice.pipeline.conversation import BargeInSettings, Conversation
from voice.pipeline.engines import Engines
from voice.pipeline.turn_metrics import ArrivalClock, TurnMetrics
from voice.protocol import (
    PRE_HANDSHAKE_TYPES,
    PROTOCOL_VERSION,
    ErrorCode,
    Frame,
    MessageType,
    ProtocolError,
    decode_frame,
    encode_bye,
    encode_error,
    encode_frame,
    next_seq,
)
from voice.protocol import messages as msg

log = logging.getLogger(__name__)

GOING_AWAY = 1001  # WebSocket close code for a server shutdown
NORMAL = 1000


_WIRE_EVENTS = {"tool_call": msg.ToolCall, "tool_result": msg.ToolResult, "state_changed": msg.StateChanged}


class _InputEndedMarker:
    """Queued after the final transcript of an end_of_input flush, so input_ended follows it."""


async def reject(conn: ServerConnection, code: ErrorCode, message: str) -> None:
    """Refuse a connection before any session exists: ERROR, then close with the same code."""
    metrics.PROTOCOL_ERRORS.labels(code.name).inc()
    try:
        await conn.send(encode_frame(Frame(MessageType.ERROR, payload=encode_error(code, message))))
        await conn.close(code.value, message[:120])
    except ConnectionClosed:
        pass


class Session:
    """Per-connection state and lifecycle; see the module docstring."""

    def __init__(self, conn: ServerConnection, settings: Settings, engines: Engines,
                 auth_header: str | None = None):
        self.id = uuid.uuid4().hex[:12]
        self.conn = conn
        self.settings = settings
        self.engines = engines
        self.auth_header = auth_header
        self.started = time.monotonic()
        self.errors = 0
        self.options: dict[str, Any] = {}
        self.audio_in: AudioInput | None = None
        self.listener: Listener | None = None
        self._seq_out = 0
        self._send_lock = asyncio.Lock()
        self.conversation: Conversation | None = None
        self.barge_in = BargeInSettings()
        self._open_utterances: set[int] = set()
        self._speech_stopped_at: dict[int, float] = {}
        self._arrivals = ArrivalClock()
        self._gated = False  # echo "gate": the mic is ignored while the agent speaks
        self._prepared: tuple[int, str, TurnMetrics] | None = None  # (utterance, text, metrics)
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        try:
            hello = await self._handshake()
        except ProtocolError as e:
            await self._fail(e)
            return
        if hello is None:  # BYE before HELLO
            await self.conn.close(NORMAL, "bye")
            return
        metrics.SESSIONS_ACTIVE.inc()
        outcome = "closed"
        try:
            await self._start(hello)
            pump = asyncio.create_task(self._pump_events(), name=f"events-{self.id}")
            try:
                outcome = await self._read_loop()
            finally:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        finally:
            metrics.SESSIONS_ACTIVE.dec()
            metrics.SESSIONS_TOTAL.labels(outcome).inc()
            if self.conversation is not None:
                await self.conversation.aclose()
            if self.listener is not None:
                await self.listener.aclose()

    async def drain(self, deadline: float) -> None:
        """Server shutdown: let the in-flight turn finish (until deadline), then BYE and close 1001."""
        self._closing = True
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.busy:
            log.info("drain deadline reached with a turn in flight", extra={"session": self.id})
        try:
            await self._send(MessageType.BYE, encode_bye(ErrorCode.SHUTTING_DOWN, "server shutting down"))
            await self.conn.close(GOING_AWAY, "server shutting down")
        except ConnectionClosed:
            pass

    @property
    def busy(self) -> bool:
        """A turn is in flight: the user is mid-utterance, or the agent is answering."""
        return bool(self._open_utterances) or bool(self.conversation and self.conversation.speaking)

    # ------------------------------------------------------------------ handshake

    async def _handshake(self) -> msg.Hello | None:
        timeout = self.settings.server.handshake_timeout_s
        while True:
            frame = await self._recv(timeout, during_handshake=True)
            if frame is None:
                raise ProtocolError(ErrorCode.HANDSHAKE_REQUIRED, f"no HELLO within {timeout:g} s")
            if frame.type == MessageType.PING:
                await self._send(MessageType.PONG, frame.payload)
                continue
            if frame.type == MessageType.BYE:
                return None
            if frame.type != MessageType.HELLO:
                raise ProtocolError(ErrorCode.HANDSHAKE_REQUIRED, "the first frame must be HELLO")
            return self._check_hello(msg.parse_hello(frame.payload))

    def _check_hello(self, hello: msg.Hello) -> msg.Hello:
        if hello.version != PROTOCOL_VERSION:
            raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"protocol version {hello.version} not supported; "
                                f"this server speaks {PROTOCOL_VERSION}")
        expected = self.settings.server.token
        if expected:
            header = self.auth_header or ""
            given = hello.token or (header[7:] if header.lower().startswith("bearer ") else "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise ProtocolError(ErrorCode.AUTH_FAILED, "missing or wrong token")
        self.options = self._session_options(hello.options)
        return hello

    def _session_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate per-session overrides (today: "vad"); unknown keys are kept for later stages."""
        out = dict(options)
        vad = options.get("vad", {})
        if not isinstance(vad, dict):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "options.vad must be an object")
        try:
            merged = self.settings.vad.defaults.model_dump() | vad
            out["vad"] = VadSettings.model_validate(merged).model_dump()
        except ValidationError as e:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"options.vad: {describe_validation_error(e)}") from None
        barge = options.get("barge_in", {})
        try:
            merged = self.settings.agent.barge_in.model_dump() | (barge if isinstance(barge, dict) else {})
            out["barge_in"] = BargeInSettings.model_validate(merged).model_dump()
        except ValidationError as e:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"options.barge_in: {describe_validation_error(e)}") from None
        try:
            out |= check_agent_options(options, self.settings.agents.default)
        except ValueError as e:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, str(e)) from None
        if self.conversation is not None and out["agent"] != self.conversation.agent.name:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "options.agent cannot change during a session")
        return out

    async def _start(self, hello: msg.Hello) -> None:
        self.audio_in = AudioInput(hello.input.codec, hello.input.sample_rate)
        self.listener = Listener(self.engines.vad, self.engines.asr, VadSettings(**self.options["vad"]),
                                 self.settings.asr.streaming)
        self.barge_in = BargeInSettings(**self.options["barge_in"])
        llm_cfg = self.settings.llm
        agent = await build_agent(self.options["agent"], self.engines.llm, self.settings.agents,
                                  llm_cfg.generation_options(), session_id=self.id,
                                  system_prompt=llm_cfg.system_prompt, profile=self.options["profile"])
        self.conversation = Conversation(
            self.engines.llm, self.engines.tts, AudioOut(hello.output.codec, hello.output.sample_rate),
            self._send_audio, self._send_event, system_prompt=llm_cfg.system_prompt,
            generation=llm_cfg.generation_options(), chunker=self.settings.tts.chunker, agent=agent)
        self.conversation.on_speaking_changed = self._agent_speaking
        ready = msg.Ready(
            session_id=self.id, input=hello.input, output=hello.output,
            limits=msg.Limits(max_payload_bytes=self.settings.server.max_payload_bytes,
                              idle_timeout_s=self.settings.server.idle_timeout_s),
            server=f"voice-agent/{__version__}", options=self.options,
        )
        await self._send(MessageType.READY, msg.encode_ready(ready))
        for event in agent.state_events():  # where the agent's flow starts
            await self._send_event(event)
        log.info("session ready", extra={"session": self.id, "client": hello.client,
                                         "input": f"{hello.input.codec}/{hello.input.sample_rate}"})

    # ------------------------------------------------------------------ reading

    async def _read_loop(self) -> str:
        """Handle frames until the client leaves; returns how the session ended (a metrics label)."""
        while True:
            try:
                frame = await self._recv(self.settings.server.idle_timeout_s)
                if frame is None:
                    await self._fail(ProtocolError(ErrorCode.IDLE_TIMEOUT, "no frames for "
                                                   f"{self.settings.server.idle_timeout_s:g} s"))
                    return "idle"
                if frame.type == MessageType.BYE:
                    await self._send(MessageType.BYE, encode_bye())
                    await self.conn.close(NORMAL, "bye")
                    return "bye"
                await self._on_frame(frame)
            except ProtocolError as e:
                if await self._fail(e):
                    return "error"
            except ConnectionClosed:
                return "vanished"

    async def _recv(self, timeout: float, *, during_handshake: bool = False) -> Frame | None:
        """Next frame, None on timeout. Text messages and bad bytes become ProtocolErrors."""
        try:
            data = await asyncio.wait_for(self.conn.recv(), timeout)
        except TimeoutError:
            return None
        if isinstance(data, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, "text messages are not part of the protocol; send binary frames")
        frame = decode_frame(data, max_payload_bytes=self.settings.server.max_payload_bytes)
        metrics.FRAMES_IN.labels(MessageType(frame.type).name if frame.known else "unknown").inc()
        if during_handshake and frame.known and frame.type not in PRE_HANDSHAKE_TYPES:
            raise ProtocolError(ErrorCode.HANDSHAKE_REQUIRED, f"{MessageType(frame.type).name} before HELLO")
        return frame

    async def _on_frame(self, frame: Frame) -> None:
        if not frame.known:
            return  # forward compatibility: unknown types are ignored
        kind = MessageType(frame.type)
        if kind == MessageType.AUDIO:
            await self._on_audio(frame.payload)
        elif kind == MessageType.CONTROL:
            await self._on_control(msg.parse_control(frame.payload))
        elif kind == MessageType.PING:
            await self._send(MessageType.PONG, frame.payload)
        elif kind == MessageType.HELLO:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "HELLO was already received")
        # PONG, and server-to-client types sent by a confused client, are ignored

    async def _on_audio(self, payload: bytes) -> None:
        assert self.audio_in is not None and self.listener is not None
        try:
            samples = self.audio_in.decode(payload)
        except BadAudio as e:
            raise ProtocolError(ErrorCode.BAD_AUDIO, str(e)) from None
        if len(samples):
            end_ms = self.audio_in.samples_in * 1000 / self.audio_in.sample_rate_hz
            self._arrivals.arrived(end_ms)
            await self.listener.feed(samples * 0 if self._gated else samples)

    async def _on_control(self, control: Any) -> None:
        assert self.listener is not None and self.audio_in is not None and self.conversation is not None
        if isinstance(control, msg.EndOfInput):
            tail = self.audio_in.flush()
            if len(tail):
                await self.listener.feed(tail)
            await self.listener.flush()
            self.listener.events.put_nowait(_InputEndedMarker())
        elif isinstance(control, msg.ConfigUpdate):
            self.options = self._session_options({**self.options, **control.options})
            self.listener.update_vad(VadSettings(**self.options["vad"]))
            self.barge_in = BargeInSettings(**self.options["barge_in"])
            await self._send_event(msg.SessionOptions(options=self.options))
        elif isinstance(control, msg.PlaybackMark):
            self.conversation.playback_mark(control.played_samples)
        elif isinstance(control, msg.Interrupt):
            await self.conversation.interrupt()
        elif isinstance(control, msg.TextInput) and control.text.strip():
            self.conversation.user_said(control.text.strip(), TurnMetrics(0, speech_end=time.monotonic()))
        elif isinstance(control, msg.Dtmf):
            self.conversation.dtmf(control.digits, TurnMetrics(0, speech_end=time.monotonic()))

    # ------------------------------------------------------------------ events out

    async def _pump_events(self) -> None:
        """Listener events -> EVENT frames, in order; also tracks turns in flight for draining."""
        assert self.listener is not None
        while True:
            event = await self.listener.events.get()
            if isinstance(event, _InputEndedMarker):
                # "everything your input caused is done": the last final, and the agent's reply to it
                while self.conversation is not None and self.conversation.speaking:
                    await asyncio.sleep(0.05)
                await self._send_event(msg.InputEnded())
                continue
            if isinstance(event, EarlyTranscript | EarlyDropped):
                self._preempt(event)  # for the agent only, not on the wire
                continue
            await self._send_event(self._to_wire(event))
            await self._take_turn(event)

    async def _take_turn(self, event: Any) -> None:
        """The user's speech drives the agent: a final transcript is a turn, speech over the
        agent's reply is a barge-in (once it lasts barge_in.min_speech_ms)."""
        assert self.conversation is not None
        if isinstance(event, SpeechStarted) and self.conversation.speaking and self.barge_in.enabled:
            task = asyncio.create_task(self._barge_in_after_min_speech())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(event, FinalTranscript) and await self._commit_prepared(event):
            return
        elif isinstance(event, FinalTranscript) and event.text:
            speech_ms = event.end_ms - event.start_ms - 2 * self._speech_pad_ms()
            if self.conversation.speaking and speech_ms < self.barge_in.min_speech_ms:
                return  # a short backchannel ("mhm") over the agent is not a new turn
            m = self._turn_metrics(event.end_ms)
            m.stamp("final_transcript")
            self.conversation.user_said(event.text, m)

    def _turn_metrics(self, end_ms: float) -> TurnMetrics:
        """A turn's metrics, timed from the wall time its last speech sample (VAD end less the
        padding) arrived."""
        return TurnMetrics(0, speech_end=self._arrivals.time_of(end_ms - self._speech_pad_ms()))

    def _speech_pad_ms(self) -> float:
        """Silence the VAD adds at each end of an utterance (its positions include it)."""
        return self.listener.vad_settings.speech_pad_ms if self.listener else 0

    def _preempt(self, event: EarlyTranscript | EarlyDropped) -> None:
        """Preemptive reply (see voice/pipeline/conversation.py): start answering the early text
        while the end-of-turn silence runs; drop that reply when the user speaks on."""
        assert self.conversation is not None
        if isinstance(event, EarlyDropped):
            if self._prepared is not None and self._prepared[0] == event.utterance:
                self.conversation.cancel_prepared()
                self._prepared = None
                log.debug("prepared reply dropped: the user spoke on", extra={"session": self.id})
            return
        if not self.settings.agent.preemptive_reply or self.conversation.speaking or self.conversation.prepared:
            return
        m = self._turn_metrics(event.end_ms)
        self._prepared = (event.utterance, event.text, m)
        self.conversation.prepare(event.text, m)
        log.debug("reply prepared", extra={"session": self.id, "utterance": event.utterance})

    async def _commit_prepared(self, final: FinalTranscript) -> bool:
        """The final of a prepared utterance: release the reply if the text is the same (True),
        else drop it and answer the final as usual (False)."""
        assert self.conversation is not None
        prepared, self._prepared = self._prepared, None
        if prepared is None or not self.conversation.prepared:
            return False
        utterance, text, m = prepared
        if utterance != final.utterance or text != final.text:
            self.conversation.cancel_prepared()
            log.debug("prepared reply dropped: the final differs", extra={"session": self.id, "early": text,
                                                                        "final": final.text})
            return False
        log.debug("prepared reply committed", extra={"session": self.id, "utterance": utterance})
        m.stamp("final_transcript")
        await self.conversation.commit()
        return True

    async def _barge_in_after_min_speech(self) -> None:
        assert self.listener is not None and self.conversation is not None
        heard_ms = self.listener.vad_settings.min_speech_ms  # the VAD already waited this long
        await asyncio.sleep(max(0.0, self.barge_in.min_speech_ms - heard_ms) / 1000)
        if self.listener.in_speech and self.conversation.speaking:
            await self.conversation.interrupt()

    def _agent_speaking(self, speaking: bool) -> None:
        """Echo handling for clients without echo cancellation, while the agent talks."""
        assert self.listener is not None
        if self.barge_in.echo == "gate":
            self._gated = speaking
        elif self.barge_in.echo == "raise":
            vad = VadSettings(**self.options["vad"])
            if speaking:
                vad = vad.model_copy(update={"threshold": max(vad.threshold, self.barge_in.raised_threshold),
                                             "neg_threshold": None})
            self.listener.update_vad(vad)

    def _to_wire(self, event: Any) -> Any:
        if isinstance(event, SpeechStarted):
            self._open_utterances.add(event.utterance)
            return msg.SpeechStarted(utterance=event.utterance, at_ms=event.at_ms)
        if isinstance(event, SpeechStopped):
            self._speech_stopped_at[event.utterance] = time.monotonic()
            return msg.SpeechStopped(utterance=event.utterance, at_ms=event.at_ms)
        if isinstance(event, PartialTranscript):
            return msg.TranscriptPartial(utterance=event.utterance, text=event.text, stable_text=event.stable_text)
        if isinstance(event, FinalTranscript):
            self._close_utterance(event)
            return msg.TranscriptFinal(utterance=event.utterance, text=event.text, start_ms=event.start_ms,
                                       end_ms=event.end_ms, language=event.language)
        raise TypeError(f"unexpected listener event {event!r}")

    def _close_utterance(self, event: FinalTranscript) -> None:
        stopped = self._speech_stopped_at.pop(event.utterance, None)
        if stopped is not None:
            metrics.ASR_FINAL_LATENCY.observe(time.monotonic() - stopped)
        metrics.UTTERANCES.labels("text" if event.text else "empty").inc()
        self._open_utterances.discard(event.utterance)

    async def _send_audio(self, frame: OutFrame) -> None:
        await self._send(MessageType.AUDIO, frame.payload, int(frame.flags), frame.timestamp_samples)

    async def _send_event(self, event: Any) -> None:
        if dataclasses.is_dataclass(event):  # the agent's own records (voice.llm.events)
            event = _WIRE_EVENTS[event.type](**dataclasses.asdict(event))
        event.t_ms = round((time.monotonic() - self.started) * 1000, 1)
        await self._send(MessageType.EVENT, msg.encode_event(event))

    async def _send(self, kind: MessageType, payload: bytes, flags: int = 0, timestamp: int = 0) -> None:
        async with self._send_lock:  # seq numbers must follow send order
            frame = Frame(kind, flags, self._seq_out, timestamp, payload)
            self._seq_out = next_seq(self._seq_out)
            await self.conn.send(encode_frame(frame))
        metrics.FRAMES_OUT.labels(kind.name).inc()

    # ------------------------------------------------------------------ errors

    async def _fail(self, error: ProtocolError) -> bool:
        """Send ERROR; close when fatal or over budget. Returns True when the session is over."""
        handshake_done = self.listener is not None
        self.errors += 1
        code = error.code
        fatal = error.fatal or not handshake_done
        if not fatal and self.errors > self.settings.server.max_errors:
            code, fatal = ErrorCode.TOO_MANY_ERRORS, True
        metrics.PROTOCOL_ERRORS.labels(code.name).inc()
        log.info("protocol error", extra={"session": self.id, "code": code.name, "detail": error.message})
        try:
            await self._send(MessageType.ERROR, encode_error(code, error.message))
            if fatal:
                await self.conn.close(code.value, error.message[:120])
        except ConnectionClosed:
            return True
        return fatal
