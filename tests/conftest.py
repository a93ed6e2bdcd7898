"""Shared fixtures: a real `voice serve` process on a free port, and test speech."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helpers: speech_data, piper_speech, wire
VOICE = [sys.executable, "-m", "voice.cli"]
READY = re.compile(r"voice server ready on (ws://\S+)")
OUTPUT_DIR = ROOT / "test-output"


@dataclass
class ServerProcess:
    """A running `voice serve`; `url` is its WebSocket endpoint, `http` its HTTP base."""

    proc: subprocess.Popen
    url: str
    log_path: Path

    @property
    def http(self) -> str:
        return self.url.replace("ws://", "http://").removesuffix("/ws")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(tmp: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 90) -> ServerProcess:
    """Start the real server process on a free port and wait for its ready line. Overload admission
    is off unless `env` turns it on: a test's quick successive connections on a shared CI box must not
    depend on how loaded the box is (the admission tests and benchmarks set it themselves)."""
    log_path = tmp / f"server-{time.monotonic_ns()}.log"
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "VOICE_SERVER__ADMISSION__ENABLED": "false", **(env or {})}
    log_file = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([*VOICE, "--log-level", "info", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=log_file, text=True, env=full_env, cwd=ROOT)
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if m := READY.search(line):
            return ServerProcess(proc, m.group(1), log_path)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log_path.read_text()}")


def start_agent_server(tmp_path_factory, name: str) -> ServerProcess:
    """A server with deterministic replies (temperature 0) and its own agent data folder
    (bookings, reminders) at `.data_dir`, so tests never see each other's SQLite rows."""
    data = tmp_path_factory.mktemp("data")
    srv = start_server(tmp_path_factory.mktemp(name), env={"VOICE_LLM__TEMPERATURE": "0",
                                                          "VOICE_DATA_DIR": str(data)})
    srv.data_dir = data
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR
