"""One call's session with the voice server: the gateway is a protocol client like any other.

Phone audio (already at the session's input rate) and DTMF go out through a queue, so the 20 ms
media clock never waits on the WebSocket. Server audio goes to the call's outbound queue; an
`interrupted` event (barge-in) flushes that queue at once; playback marks report what was really
sent to the phone. When the server ends the session, `run()` returns and the gateway hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice.client import ClientError, ClientOptions, ReceivedAudio, ServerError, VoiceClient
from voice.protocol import Flags
from voice.protocol import messages as msg

log = logging.getLogger(__name__)

#: Events worth a line in the call's event log (partials and audio are too chatty).
LOGGED_EVENTS = frozenset({"speech_started", "speech_stopped", "transcript_final", "interrupted", "turn_metrics",
                           "tool_call", "tool_result", "state_changed"})


@dataclass
class BridgeSettings:
    server_url: str = "ws://127.0.0.1:8765/ws"
    token: str | None = None
    agent: str | None = None
    codec: str = "pcm16"       # "opus" saves bandwidth when the gateway runs far from the server
    rate_hz: int = 16000       # both directions, on the wire to the server
    mark_interval_s: float = 0.2
    connect_timeout_s: float = 5.0
    max_queue_frames: int = 250  # 5 s of phone audio waiting for a slow server link
    options: dict[str, Any] = field(default_factory=dict)


class CallBridge:
    """Owns the VoiceClient of one call. `connect()`, `attach()` the media, `run()`, `close()`."""

    def __init__(self, settings: BridgeSettings, call_info: dict[str, str],
                 on_event: Callable[[dict[str, Any]], None]):
        self.settings = settings
        self.on_event = on_event
        # phones have no AEC; who called whom goes under "sip" ("call" is the server's call settings)
        options = {"barge_in": {"echo": "raise"}, "sip": call_info, **settings.options}
        if settings.agent:
            options["agent"] = settings.agent
        self.client = VoiceClient(settings.server_url, ClientOptions(
            input_codec=settings.codec, input_rate_hz=settings.rate_hz, output_codec=settings.codec,
            output_rate_hz=settings.rate_hz, options=options, token=settings.token))
        self._outbox: asyncio.Queue[np.ndarray | Any] = asyncio.Queue()
        self._media: Any = None
        self.agent_texts: list[str] = []
        self.dropped_frames = 0
        self._closed = False

    async def connect(self) -> None:
        """HELLO/READY; raises ClientError, OSError or TimeoutError (the gateway answers 503)."""
        await asyncio.wait_for(self.client.connect(self.settings.connect_timeout_s), self.settings.connect_timeout_s)

    def attach(self, media: Any) -> None:
        """The call's CallMedia: it gets `play()`/`flush()` and reports `played_samples`."""
        self._media = media

    # ------------------------------------------------------------------ from the phone

    def audio_from_phone(self, pcm: np.ndarray) -> None:
        if self._closed:
            return
        if self._outbox.qsize() >= self.settings.max_queue_frames:
            self.dropped_frames += 1  # the server link is stuck; old audio is worth less than new
            with contextlib.suppress(asyncio.QueueEmpty):
                self._outbox.get_nowait()
        self._outbox.put_nowait(pcm)

    def dtmf(self, digit: str) -> None:
        self.on_event({"type": "dtmf", "digit": digit})
        if not self._closed:
            self._outbox.put_nowait(msg.Dtmf(digits=digit))

    # ------------------------------------------------------------------ the session

    async def run(self) -> str:
        """Until the session ends; returns why ("server bye", "server error ...")."""
        tasks = [asyncio.create_task(self._send(), name="bridge-send"),
                 asyncio.create_task(self._report_playback(), name="bridge-marks")]
        try:
            await self._receive()
            return "server ended the session"
        except ClientError as e:
            return f"server error {e.code}: {e.message}"
        except OSError as e:
            return f"server connection lost: {e}"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive(self) -> None:
        async for item in self.client.messages():
            if isinstance(item, ReceivedAudio):
                if self._media is not None:
                    self._media.play(item.samples, item.timestamp, segment_end=bool(item.flags & Flags.SEGMENT_END))
            elif isinstance(item, ServerError):
                log.warning("server error", extra={"code": item.code, "error": item.message})
                self.on_event({"type": "server_error", "code": item.code, "message": item.message})
            else:
                self._on_server_event(item)

    def _on_server_event(self, event: Any) -> None:
        kind = getattr(event, "type", "")
        if kind == "interrupted" and self._media is not None:
            self._media.flush()  # barge-in: the phone must stop hearing the agent now
        if kind == "agent_text" and event.final:
            self.agent_texts.append(event.text)
            self.on_event(event.model_dump(exclude_none=True))
        elif kind in LOGGED_EVENTS:
            self.on_event(event.model_dump(exclude_none=True))

    async def _send(self) -> None:
        while True:
            item = await self._outbox.get()
            if isinstance(item, np.ndarray):
                await self.client.send_audio(item)
            else:
                await self.client.send_control(item)

    async def _report_playback(self) -> None:
        last = -1
        while True:
            await asyncio.sleep(self.settings.mark_interval_s)
            played = self._media.played_samples if self._media is not None else 0
            if played != last:
                await self.client.send_control(msg.PlaybackMark(played_samples=played))
                last = played

    async def close(self) -> None:
        """The call is over: BYE to the server (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self.client.close()
