"""The server an eval talks to: a fresh `voice serve` subprocess on a free port, with its own data
folder (bookings, reminders), so a run never sees another run's rows and leaves nothing behind.

Its log goes to a file in that folder; the path is part of the report, since a failing scenario
is often explained by what the server logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY = re.compile(r"voice server ready on (ws://\S+)")


class ServerStartError(Exception):
    pass


@dataclass
class SpawnedServer:
    url: str
    proc: asyncio.subprocess.Process
    log_path: Path
    data_dir: Path
    exit_code_during_run: int | None = None
    _drain: asyncio.Task[None] | None = None

    async def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (the server drains its sessions), then kill after `timeout_s`."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            self._drain.cancel()
        return self.proc.returncode


def server_env(data_dir: Path, temperature: float | None, code_root: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "VOICE_DATA_DIR": str(data_dir)}
    if code_root is not None:  # another checkout's `voice` package (e.g. the code before a fix)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code_root), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")  # as the tests run it: no OpenMP pool fighting the engines
    if temperature is not None:
        env["VOICE_LLM__TEMPERATURE"] = str(temperature)
    return env


async def start_server(data_dir: Path, *, config: str | None = None, temperature: float | None = 0.0,
                       code_root: Path | None = None, timeout_s: float = 180.0) -> SpawnedServer:
    """Start `voice serve --port 0` and wait for its ready line (model loading takes a while).
    `code_root`: run the server from that source tree instead of the installed package."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    args = [sys.executable, "-m", "voice.cli", "--log-level", "info", "serve", "--port", "0"]
    if config:
        args += ["--config", config]
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child; closed below
    try:
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=log,
                                                    env=server_env(data_dir, temperature, code_root),
                                                    cwd=code_root)
    finally:
        log.close()
    assert proc.stdout is not None
    try:
        url = await asyncio.wait_for(_ready_url(proc.stdout), timeout_s)
    except (TimeoutError, ServerStartError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        tail = log_path.read_text(errors="replace")[-3000:]
        raise ServerStartError(f"voice serve did not start (exit {proc.returncode}); log {log_path}:\n{tail}") from None
    server = SpawnedServer(url, proc, log_path, data_dir)
    server._drain = asyncio.create_task(_drain(proc.stdout))  # a full stdout pipe would block the server
    return server


async def _ready_url(stdout: asyncio.StreamReader) -> str:
    while line := await stdout.readline():
        if m := READY.search(line.decode(errors="replace")):
            return m.group(1)
    raise ServerStartError("the server exited before it was ready")


async def _drain(stdout: asyncio.StreamReader) -> None:
    while await stdout.readline():
        pass


def models_of(config: str | None, temperature: float | None) -> dict[str, Any]:
    """The models a server started with these settings uses (for the report)."""
    from voice.config import load_settings

    overrides: dict[str, Any] = {"llm": {"temperature": temperature}} if temperature is not None else {}
    s = load_settings(config, None, overrides)
    tts = s.tts.model if s.tts.engine == "piper" else f"{s.tts.engine} ({s.tts.token.gguf})"
    return {"llm": s.llm.model, "llm_engine": s.llm.engine, "llm_temperature": s.llm.temperature,
            "asr": s.asr.model, "tts": tts, "profile": s.profile}
