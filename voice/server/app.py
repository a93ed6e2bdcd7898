"""The voice server process: one asyncio loop, a WebSocket endpoint, HTTP routes, graceful drain.

Doors own everything per connection (voice/doors/: our protocol, Twilio); this module only admits them,
counts them and shuts them down: on SIGTERM/SIGINT it stops accepting, lets in-flight turns finish
up to `drain_timeout_s`, then says BYE and closes each connection with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from voice import metrics
from voice.config import Settings
from voice.doors.base import CallDoor
from voice.doors.protocol import Session, reject
from voice.doors.realtime import REALTIME_PATH, RealtimeDoor
from voice.doors.twilio import TWILIO_PATH, TwilioStream
from voice.pipeline.engines import Engines
from voice.pipeline.recording import retention_sweeps
from voice.protocol import HEADER_SIZE, ErrorCode
from voice.server.admission import AdmissionControl, engine_queue_delays_ms
from voice.server.http import HttpRoutes
from voice.server.memory import HeapTrimmer, limit_malloc_arenas

log = logging.getLogger(__name__)


def select_subprotocol(conn: ServerConnection, offered: Sequence[str]) -> str | None:
    """Realtime browser clients offer ["realtime", "openai-insecure-api-key.<token>"]: answer
    "realtime" (the key is read by the door); other clients offer none."""
    return "realtime" if "realtime" in offered else None

TRY_AGAIN_LATER = 1013  # WebSocket close code: the server is overloaded or going away


class VoiceServer:
    """Admits connections as Sessions within the configured limits and drains them on shutdown."""

    def __init__(self, settings: Settings, engines: Engines, worker: int | None = None):
        self.settings = settings
        self.engines = engines
        self.worker = worker  # index under `voice serve --workers N` (voice/server/workers.py)
        self.admission = AdmissionControl(settings.server.admission, settings.server.max_sessions)
        self._admission_task: asyncio.Task | None = None
        self._sweeps: asyncio.Task | None = None  # deletes recordings older than their retention
        self.sessions: set[CallDoor] = set()
        self.draining = False
        self.started_at = time.monotonic()
        self._server: Server | None = None
        self._stopped = asyncio.Event()
        self.heap_trimmer = HeapTrimmer(settings.server.trim_memory_every_s)

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        cfg = self.settings.server
        routes = HttpRoutes(cfg.web_dir, cfg.token, self.health)
        self._server = await serve(
            self._handle, cfg.host, cfg.port,
            process_request=routes,
            # websockets refuses bigger messages from their header (1009); /ws holds itself to the
            # protocol's own limit (voice/doors/protocol.py), /v1/realtime's appends are base64
            max_size=max(cfg.max_payload_bytes + HEADER_SIZE, self.settings.realtime.max_append_bytes * 4 // 3 + 65536),
            select_subprotocol=select_subprotocol,
            compression=None,        # audio does not compress; deflate would only cost CPU
            ping_interval=20, ping_timeout=20, close_timeout=5,
            server_header="voice-agent",
            reuse_port=cfg.reuse_port or None,
        )
        self._sweeps = asyncio.create_task(retention_sweeps(self.settings.agent.recording), name="recordings")
        self._admission_task = asyncio.create_task(self.admission.run(
            lambda: len(self.sessions), lambda: engine_queue_delays_ms(self.engines)), name="admission")
        log.info("listening", extra={"host": cfg.host, "port": self.port})

    def health(self) -> dict:
        return {
            "status": "draining" if self.draining else "ok",
            "sessions": len(self.sessions),
            "max_sessions": self.settings.server.max_sessions,
            "admission": self.admission.state(),
            "admitting": not self.draining and self.admission.refusal(len(self.sessions)) is None,
            "pid": os.getpid(),
            "worker": self.worker,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "profile": self.settings.profile,
        }

    async def _handle(self, conn: ServerConnection) -> None:
        path = conn.request.path.split("?", 1)[0] if conn.request is not None else "/ws"
        if self.draining:
            await self._refuse(conn, path, ErrorCode.SHUTTING_DOWN, "server is shutting down")
            return
        if (refusal := self.admission.check(len(self.sessions))) is not None:
            await self._refuse(conn, path, ErrorCode.SERVER_BUSY, refusal.message)
            return
        door = self._door(conn, path)
        self.sessions.add(door)
        try:
            await door.run()
        except ConnectionClosed:
            pass
        except Exception:  # one broken session must never take the server down
            log.exception("session crashed", extra={"session": door.id})
            metrics.SESSIONS_TOTAL.labels("crashed").inc()
        finally:
            self.sessions.discard(door)
            self.heap_trimmer.call_ended(len(self.sessions))

    @staticmethod
    async def _refuse(conn: ServerConnection, path: str, code: ErrorCode, message: str) -> None:
        """No session: our protocol gets ERROR + the code; other wires a WebSocket close 1013 (try
        again later), which Twilio and Realtime clients understand."""
        if path in (TWILIO_PATH, REALTIME_PATH):
            metrics.PROTOCOL_ERRORS.labels(code.name).inc()
            with contextlib.suppress(ConnectionClosed):
                await conn.close(TRY_AGAIN_LATER, message[:120])
            return
        await reject(conn, code, message)

    def _door(self, conn: ServerConnection, path: str) -> CallDoor:
        """The door for the path the client connected to (everything else speaks our protocol)."""
        if path == TWILIO_PATH:
            return TwilioStream(conn, self.settings, self.engines)
        if path == REALTIME_PATH:
            return RealtimeDoor(conn, self.settings, self.engines)
        return Session(conn, self.settings, self.engines, auth_header=conn.request.headers.get("Authorization"))

    async def shutdown(self) -> None:
        """Stop accepting, drain in-flight turns up to the deadline, then close everything."""
        if self.draining:
            return
        self.draining = True
        deadline = time.monotonic() + self.settings.server.drain_timeout_s
        log.info("draining", extra={"sessions": len(self.sessions)})
        if self._server is not None:
            self._server.close(close_connections=False)
        await asyncio.gather(*(s.drain(deadline) for s in list(self.sessions)), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._admission_task is not None:
            self._admission_task.cancel()
        if self._sweeps is not None:
            self._sweeps.cancel()
        self._stopped.set()

    async def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT, then drain."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.shutdown()))
        await self._stopped.wait()


async def run_server(settings: Settings, ready_line: bool = True, worker: int | None = None) -> None:
    """Load engines (off the loop: model loading is blocking file I/O), serve, drain, release."""
    from voice.pipeline.engines import load_engines

    print(f"loading models (profile {settings.profile}: asr {settings.asr.model}, llm {settings.llm.model}, "
          f"tts {settings.tts.engine})…", file=sys.stderr, flush=True)
    limit_malloc_arenas(settings.server.malloc_arena_max)  # before the engines' threads make arenas
    engines = await asyncio.to_thread(load_engines, settings)
    await warm_up(settings, engines)
    server = VoiceServer(settings, engines, worker)
    try:
        await server.start()
        if ready_line:  # scripts and tests wait for this exact line
            print(f"voice server ready on ws://{settings.server.host}:{server.port}/ws", flush=True)
        await server.serve_forever()
    finally:
        await asyncio.to_thread(engines.close)


async def warm_up(settings: Settings, engines: Engines) -> None:
    """Evaluate the default agent's prompt once before serving, so the first caller does not pay
    for it: llama.cpp keeps the evaluated prefix (system prompt, tools) and reuses it for every
    turn that starts the same way (measured: 3.8 s cold vs 0.15 s warm for the first token on CPU).
    A failure here is logged, never fatal: the first turn is merely slower."""
    from voice.agents import build_agent

    llm_cfg = settings.llm
    started = time.monotonic()
    try:
        agent = await build_agent(settings.agents.default, engines.llm, settings.agents,
                                  llm_cfg.generation_options(), session_id="warm-up",
                                  system_prompt=llm_cfg.system_prompt)
        try:
            await agent.warm_up()  # the plain round's prompt and the tool round's (system + tools)
        finally:
            await agent.aclose()
    except Exception as e:  # warm-up is an optimisation, never fatal
        log.warning("LLM warm-up failed: %s", e)
        return
    log.info("LLM warmed up", extra={"seconds": round(time.monotonic() - started, 2)})
