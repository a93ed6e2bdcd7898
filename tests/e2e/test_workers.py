"""Several server processes: `voice serve --workers 2` behind a real HAProxy (deploy/haproxy.cfg), and on
one SO_REUSEPORT port. Calls are placed with the real load-test tool; each worker's own /healthz
(its pid, its sessions) shows where they landed.

Light on 2 cores: each worker gets one llama.cpp context and one thread per engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

from voice.loadtest import LoadtestOptions, run_loadtest

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("haproxy") is None,
                                                  reason="haproxy is not installed (scripts/install.sh --test)")]

HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
READY = re.compile(r"voice server ready on (ws://\S+)")
WORKER_ENV = {  # two workers share 2 cores: one context, one thread each
    "OMP_NUM_THREADS": "1", "VOICE_LLM__CONTEXTS": "1", "VOICE_LLM__N_THREADS": "1",
    "VOICE_LLM__N_THREADS_BATCH": "1", "VOICE_LLM__N_THREADS_SOLO": "1", "VOICE_ASR__CPU_THREADS": "1",
    "VOICE_LLM__TEMPERATURE": "0", "VOICE_LLM__MAX_TOKENS": "40", "VOICE_SERVER__DRAIN_TIMEOUT_S": "5",
    "VOICE_SERVER__ADMISSION__ENABLED": "false",  # like tests/conftest.py: not what this test is about
}


def health(port: int) -> dict | None:
    """A process's /healthz body (200 or 503), or None when nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())
    except OSError:
        return None


def wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def free_ports(count: int) -> int:
    """A base port with `count` free consecutive ports after it."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count < 65535 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free consecutive ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start_workers(tmp: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    log_path = tmp / "workers.log"
    proc = subprocess.Popen([sys.executable, "-m", "voice.cli", "--log-level", "info", "serve", "--workers", "2",
                             *args], stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True,  # noqa: SIM115
                            env={**os.environ, **WORKER_ENV}, cwd=ROOT)
    deadline = time.monotonic() + 300
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if m := READY.search(line):
            return proc, m.group(1), log_path
    proc.kill()
    raise RuntimeError(f"workers did not start:\n{log_path.read_text()}")


def stop(proc: subprocess.Popen, timeout_s: float = 40) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="module")
def balanced(tmp_path_factory):
    """Two workers on their own ports behind HAProxy: (lb port, [worker ports], supervisor)."""
    tmp = tmp_path_factory.mktemp("workers")
    base = free_ports(2)
    supervisor, _, log_path = start_workers(tmp, "--port-per-worker", "--port", str(base))
    ports = [base, base + 1]
    lb = free_ports(1)
    env = {**os.environ, "VOICE_LB_BIND": f"127.0.0.1:{lb}",
           "VOICE_WORKER_0": f"127.0.0.1:{ports[0]}", "VOICE_WORKER_1": f"127.0.0.1:{ports[1]}"}
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(HAPROXY_CFG)], env=env,
                               stdout=subprocess.DEVNULL, stderr=open(tmp / "haproxy.log", "w"))  # noqa: SIM115
    try:
        pids = {w["pid"] for w in map(health, ports)}
        # the balancer's health checks found both: /healthz through it answers from each worker
        wait_for(lambda: {(health(lb) or {}).get("pid") for _ in range(6)} >= pids, 30, "both workers behind haproxy")
        yield lb, ports, supervisor
    finally:
        haproxy.terminate()
        haproxy.wait(10)
        assert stop(supervisor) == 0, log_path.read_text()[-3000:]


def test_calls_through_the_balancer_land_on_both_workers_and_are_answered(balanced):
    lb, ports, _ = balanced
    workers = [health(p) for p in ports]
    assert sorted(w["worker"] for w in workers) == [0, 1] and len({w["pid"] for w in workers}) == 2

    async def scenario() -> tuple[dict, list[int]]:
        test = asyncio.create_task(run_loadtest(LoadtestOptions(
            url=f"ws://127.0.0.1:{lb}/ws", callers=2, turns=1, metrics_url=""), progress=False))
        both: list[int] = []
        while not test.done():  # both calls on the line at once: one on each worker
            sessions = [(await asyncio.to_thread(health, p) or {}).get("sessions", 0) for p in ports]
            both = both or (sessions if sessions == [1, 1] else [])
            await asyncio.sleep(0.3)
        return await test, both

    summary, both = asyncio.run(scenario())
    assert both == [1, 1], "the two calls did not land on different workers"
    assert summary["answered"] == 2 and summary["lost_turns"] == 0, summary
    assert summary["errors"] == {} and summary["refused"] == 0


def test_a_drained_worker_gets_no_new_calls_and_comes_back(balanced):
    lb, ports, _ = balanced
    drained = health(ports[0])
    os.kill(drained["pid"], signal.SIGTERM)  # a rolling restart of worker 0
    # meanwhile every new call goes to worker 1 and is answered
    summary = asyncio.run(run_loadtest(LoadtestOptions(url=f"ws://127.0.0.1:{lb}/ws", callers=1, turns=1,
                                                       metrics_url=""), progress=False))
    assert summary["answered"] == 1 and summary["errors"] == {}, summary
    # the supervisor starts a fresh worker 0 on the same port
    back = wait_for(lambda: (h := health(ports[0])) and h["status"] == "ok" and h["pid"] != drained["pid"] and h,
                    240, "worker 0 to come back")
    assert back["worker"] == 0


def test_workers_share_one_port_with_reuse_port(tmp_path):
    supervisor, url, log_path = start_workers(tmp_path)
    try:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        pids = {health(port)["pid"] for _ in range(40)}  # each request is a new connection
        assert len(pids) == 2, pids
    finally:
        assert stop(supervisor) == 0, log_path.read_text()[-3000:]
    for pid in pids:  # the workers are gone with the supervisor
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
