"""`voice eval`'s engine: speak the user's turns, start (or reach) a server, play the scenarios
`concurrency` at a time, transcribe reply audio where asked, evaluate.

Reply audio is transcribed after every scenario has finished, so Whisper never competes with the
server for the CPU while latencies are being measured.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voice.client import ClientError
from voice.eval.evaluate import ScenarioResult, audio_checkable, evaluate
from voice.eval.scenario import Scenario
from voice.eval.server import SpawnedServer, models_of, start_server
from voice.eval.session import ScenarioSession, TurnLog
from voice.eval.speech import ReplyListener, UserVoice, read_wav
from voice.protocol import ErrorCode

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    url: str | None = None            # an existing server; None: start one
    token: str | None = None
    config: str | None = None         # TOML settings for the started server
    temperature: float | None = 0.0   # of the started server's LLM: 0 makes a run repeatable
    concurrency: int = 2
    audio_model: str = "whisper-base"  # Whisper for check_audio
    data_dir: Path | None = None      # the started server's data folder (default: a temp folder)
    server_code: Path | None = None   # start the server from this source tree (default: installed)


@dataclass
class EvalRun:
    results: list[ScenarioResult]
    models: dict[str, Any]
    url: str
    started: str
    duration_s: float
    server_log: str | None = None     # kept when a started server's run had errors or timeouts
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Played:
    scenario: Scenario
    logs: list[TurnLog]
    opening: list[dict[str, Any]]
    error: str
    duration_s: float


async def speak_turns(scenarios: list[Scenario], voice: UserVoice | None = None) -> dict[str, dict[int, np.ndarray]]:
    """16 kHz int16 speech for every spoken turn: WAV files read, `say` texts spoken by Piper."""
    voice = voice or UserVoice()
    out: dict[str, dict[int, np.ndarray]] = {}
    for s in scenarios:
        audio: dict[int, np.ndarray] = {}
        for i, turn in enumerate(s.turns):
            if turn.kind == "audio":
                path = s.audio_path(turn)
                assert path is not None
                audio[i] = await asyncio.to_thread(read_wav, path)
            elif turn.kind == "say":
                audio[i] = await voice.speak(turn.say or "")
        out[s.name] = audio
    return out


BUSY_WAIT_S = 120.0  # how long a scenario keeps retrying a server that is at capacity


def _retry_after_s(message: str) -> float:
    """The server's retry hint ("retry_after_ms=10000" in SERVER_BUSY), 0.5..10 s."""
    m = re.search(r"retry_after_ms=(\d+)", message)
    return min(10.0, max(0.5, int(m.group(1)) / 1000)) if m else 2.0


async def _play(scenario: Scenario, url: str, audio: dict[int, np.ndarray], token: str | None) -> _Played:
    """One scenario in its own session; a busy server (admission control) is asked again, as a
    caller would, for up to BUSY_WAIT_S."""
    give_up = time.monotonic() + BUSY_WAIT_S
    while True:
        session = ScenarioSession(scenario, url, audio, token=token)
        t0 = time.monotonic()
        error = ""
        try:
            await session.run()
        except ClientError as e:
            if e.code == ErrorCode.SERVER_BUSY and not session.logs and time.monotonic() < give_up:
                await asyncio.sleep(_retry_after_s(e.message))
                continue
            error = f"{type(e).__name__}: {e}"
        except Exception as e:  # a session that cannot connect or breaks is this scenario's failure only
            error = f"{type(e).__name__}: {e}"
        if error:
            log.warning("scenario %s: %s", scenario.name, error)
        return _Played(scenario, session.logs, session.opening, error, round(time.monotonic() - t0, 2))


async def _listen(played: list[_Played], listener: ReplyListener) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    for p in played:
        for i, turn_log in enumerate(p.logs):
            if audio_checkable(p.scenario, p.logs, i):
                out.setdefault(p.scenario.name, {})[i] = await listener.transcribe(np.concatenate(turn_log.audio))
    return out


async def run_scenarios(scenarios: list[Scenario], options: RunOptions,
                        progress: Callable[[ScenarioResult], None] | None = None,
                        voice: UserVoice | None = None) -> EvalRun:
    """Play every scenario and evaluate it. `progress` is called as each scenario ends (before
    its reply-audio check, which runs at the end)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.monotonic()
    audio = await speak_turns(scenarios, voice)
    server: SpawnedServer | None = None
    tmp = None
    if options.url is None:
        data_dir = options.data_dir
        if data_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="voice-eval-")
            data_dir = Path(tmp.name)
        server = await start_server(data_dir, config=options.config, temperature=options.temperature,
                                    code_root=options.server_code)
        url = server.url
        models = models_of(options.config, options.temperature)
    else:
        url = options.url
        models = models_of(options.config, None) if options.config else {"server": "external: models unknown"}
    gate = asyncio.Semaphore(max(1, options.concurrency))

    async def one(s: Scenario) -> _Played:
        async with gate:
            p = await _play(s, url, audio[s.name], options.token)
        if progress is not None:
            progress(evaluate(s, p.logs, opening=p.opening, error=p.error, duration_s=p.duration_s))
        return p

    try:
        played = await asyncio.gather(*(one(s) for s in scenarios))
    finally:
        if server is not None:
            server.exit_code_during_run = server.proc.returncode  # not None: it died under the scenarios
            await server.stop()
    heard = await _listen(played, ReplyListener(options.audio_model)) if any(s.check_audio for s in scenarios) else {}
    results = [evaluate(p.scenario, p.logs, opening=p.opening, audio_transcripts=heard.get(p.scenario.name),
                        error=p.error, duration_s=p.duration_s) for p in played]
    run = EvalRun(results, models, url, started, round(time.monotonic() - t0, 1))
    if server is not None:
        troubled = any(r.status == "error" or any(t.missing for t in r.turns) for r in results)
        if tmp is not None and troubled:
            tmp = None  # keep the server's log: it often explains an error or a timeout
            log.warning("scenarios had errors or timeouts; the server log is kept: %s", server.log_path)
        run.server_log = str(server.log_path) if tmp is None else None
        if server.exit_code_during_run is not None:
            run.extra["server_exit_code"] = server.exit_code_during_run
    if tmp is not None:
        tmp.cleanup()
    return run
