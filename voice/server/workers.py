"""`voice serve --workers N`: N server processes, each with its own engines, under one supervisor.

Why processes: one server process is one asyncio loop and one set of engines; past what they can
serve (voice/server/admission.py measures it), more processes on a bigger box add capacity. A
process keeps no state beyond its sessions, so any of them can take any call.

- Shared port (default): every worker listens on `server.port` with SO_REUSEPORT and the kernel
  spreads new connections over the listening workers. A draining worker closes its listener, so new
  calls go to the others.
- `--port-per-worker`: worker i listens on `port + i`, for a load balancer in front that health-checks
  and drains each worker on its own (deploy/haproxy.cfg, docs/operations.md).

The supervisor starts the workers (`python -m voice.server.workers`, the settings as JSON on
stdin), prints the ready line once every worker has printed its own, restarts a worker that exits
while the service runs (a rolling restart is `kill -TERM <worker pid>`: it drains, exits and comes
back), and on SIGTERM/SIGINT forwards SIGTERM to every worker (each drains its calls, up to
`server.drain_timeout_s`) and kills what is still there after the drain plus a margin. A worker
whose supervisor dies drains and exits too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from voice.config import Settings

log = logging.getLogger(__name__)

READY = re.compile(r"voice server ready on (ws://\S+)")
START_TIMEOUT_S = 300.0        # loading the models of N workers on a small box takes a while
KILL_MARGIN_S = 15.0           # after drain_timeout_s, before SIGKILL
FATAL_EXIT_CODES = (2, 3)      # config error, model missing: restarting would fail the same way
BACKOFF_MAX_S = 30.0


@dataclass
class Worker:
    index: int
    port: int
    proc: subprocess.Popen | None = None
    url: str | None = None
    started_at: float = 0.0
    restarts: int = 0
    ready: threading.Event = field(default_factory=threading.Event)


class Supervisor:
    """Starts, watches and stops the worker processes (module docstring)."""

    def __init__(self, settings: Settings, workers: int, port_per_worker: bool = False,
                 log_level: str = "warning"):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.settings = settings
        self.log_level = log_level
        self.port_per_worker = port_per_worker
        base = settings.server.port
        if not port_per_worker and base == 0:
            base = free_port(settings.server.host)  # one port for all: pick it here
        self.workers = [Worker(i, base + i if port_per_worker and base else base) for i in range(workers)]
        self._stopping = False

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._request_stop())
        for worker in self.workers:
            self._start(worker)
        if not self._wait_ready():
            self._stop_all()
            return 1
        urls = [w.url for w in self.workers]
        where = urls[0] if not self.port_per_worker else f"{urls[0]} ({' '.join(map(str, urls))})"
        print(f"voice server ready on {where} with {len(self.workers)} workers", flush=True)
        code = self._watch()
        self._stop_all()
        return code

    def _request_stop(self) -> None:
        self._stopping = True

    def _start(self, worker: Worker) -> None:
        server = self.settings.server.model_copy(update={"port": worker.port,
                                                         "reuse_port": not self.port_per_worker})
        settings = self.settings.model_copy(update={"server": server})
        worker.ready.clear()
        worker.started_at = time.monotonic()
        worker.proc = subprocess.Popen(
            [sys.executable, "-m", "voice.server.workers", "--index", str(worker.index),
             "--log-level", self.log_level],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert worker.proc.stdin is not None
        worker.proc.stdin.write(settings.model_dump_json())
        worker.proc.stdin.close()
        threading.Thread(target=self._read_stdout, args=(worker, worker.proc), daemon=True,
                         name=f"worker-{worker.index}-stdout").start()
        log.info("worker started", extra={"worker": worker.index, "pid": worker.proc.pid, "port": worker.port})

    def _read_stdout(self, worker: Worker, proc: subprocess.Popen) -> None:
        """The worker's stdout: its ready line, then anything it prints (passed on)."""
        assert proc.stdout is not None
        for line in proc.stdout:
            if (m := READY.search(line)) and not worker.ready.is_set():
                worker.url = m.group(1)
                worker.ready.set()
                print(f"worker {worker.index} (pid {proc.pid}) ready on {worker.url}", file=sys.stderr, flush=True)
            else:
                sys.stdout.write(line)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        for worker in self.workers:
            while not worker.ready.wait(0.2):
                assert worker.proc is not None
                if self._stopping or worker.proc.poll() is not None or time.monotonic() > deadline:
                    code = worker.proc.poll()
                    print(f"error: worker {worker.index} did not start (exit code {code})", file=sys.stderr)
                    return False
        return True

    def _watch(self) -> int:
        """Restart workers that exit while serving; return when asked to stop (0) or on a fatal exit."""
        while not self._stopping:
            time.sleep(0.2)
            for worker in self.workers:
                assert worker.proc is not None
                code = worker.proc.poll()
                if code is None or self._stopping:
                    continue
                if code in FATAL_EXIT_CODES:
                    print(f"error: worker {worker.index} exited with {code}; stopping", file=sys.stderr)
                    return code
                self._restart(worker, code)
        return 0

    def _restart(self, worker: Worker, code: int) -> None:
        lived_s = time.monotonic() - worker.started_at
        worker.restarts = worker.restarts + 1 if lived_s < BACKOFF_MAX_S else 0
        backoff_s = min(2.0 ** worker.restarts - 1, BACKOFF_MAX_S)  # 0 s after a long life: a rolling restart
        log.warning("worker exited; restarting", extra={"worker": worker.index, "code": code,
                                                        "lived_s": round(lived_s, 1), "backoff_s": backoff_s})
        deadline = time.monotonic() + backoff_s
        while time.monotonic() < deadline and not self._stopping:
            time.sleep(0.1)
        if not self._stopping:
            self._start(worker)

    def _stop_all(self) -> None:
        """SIGTERM every worker (each drains), SIGKILL what is left after the drain and a margin."""
        procs = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.server.drain_timeout_s + KILL_MARGIN_S
        for proc in procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("worker did not drain in time; killing it", extra={"pid": proc.pid})
                proc.kill()
                proc.wait()


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run_workers(settings: Settings, workers: int, port_per_worker: bool = False, log_level: str = "warning") -> int:
    return Supervisor(settings, workers, port_per_worker, log_level).run()


# --- the worker process -------------------------------------------------------------------------


def _exit_with_parent() -> None:
    """Drain and exit when the supervisor is gone (killed: it cannot forward anything any more)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def worker_main(argv: list[str] | None = None) -> int:
    from voice.logs import setup_logging
    from voice.models import ModelCorrupt, ModelMissing
    from voice.server.app import run_server

    parser = argparse.ArgumentParser(prog="voice.server.workers")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    settings = Settings.model_validate_json(sys.stdin.read())
    threading.Thread(target=_exit_with_parent, daemon=True, name="parent-watch").start()
    try:
        asyncio.run(run_server(settings, ready_line=True, worker=args.index))
    except (ModelMissing, ModelCorrupt) as e:
        print(f"error: worker {args.index}: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"error: worker {args.index} cannot serve: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
