"""`voice loadtest`, the real CLI, against the real server: a tiny run through each door, and a refusal."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_seat_server(tmp_path_factory):
    """Room for exactly two sessions, so a third caller is refused."""
    srv = start_server(tmp_path_factory.mktemp("loadtest"), env={
        "VOICE_SERVER__MAX_SESSIONS": "2", "VOICE_LLM__TEMPERATURE": "0", "VOICE_LLM__MAX_TOKENS": "40"})
    yield srv
    srv.stop()


def loadtest(url: str, tmp_path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "summary.json"
    result = subprocess.run([sys.executable, "-m", "voice.cli", "loadtest", "--url", url, "--json", str(out),
                             "--quiet", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


def test_two_callers_over_ws_are_answered_and_measured(two_seat_server, tmp_path):
    plot = tmp_path / "loadtest.png"
    summary, table = loadtest(two_seat_server.url, tmp_path, "--callers", "2", "--turns", "2", "--ramp-s", "1",
                              "--plot", str(plot))
    print(table)
    assert summary["callers"] == 2 and summary["turns"] == 4 and summary["lost_turns"] == 0
    assert summary["errors"] == {} and summary["refused"] == 0
    v2v = summary["v2v_ms"]
    assert v2v["n"] == 4 and 0 < v2v["p50"] <= v2v["p95"] <= v2v["p99"] < 15000
    # each turn was heard by the server and answered with words
    assert all(t["heard"] and t["reply"] for t in summary["per_turn"]), summary["per_turn"]
    # the server's RSS and CPU over time, from its /metrics
    assert len(summary["rss_mb"]) >= 3 and all(mb > 100 for _, mb in summary["rss_mb"])
    assert summary["cpu_cores"] and max(c for _, c in summary["cpu_cores"]) > 0.1
    assert summary["server_series"][-1]["sessions"] == 0  # both callers hung up
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "voice-to-voice" in table and "p95" in table


def test_a_caller_past_the_limit_is_counted_as_refused_not_lost(two_seat_server, tmp_path):
    summary, _ = loadtest(two_seat_server.url, tmp_path, "--callers", "3", "--turns", "1", "--ramp-s", "0.5")
    assert summary["refused"] == 1 and summary["refused_by_code"] == {"SERVER_BUSY": 1}
    assert summary["connected"] == 2 and summary["turns"] == 2 and summary["lost_turns"] == 0
    assert summary["errors"] == {}


def test_one_caller_through_the_twilio_door(two_seat_server, tmp_path):
    summary, _ = loadtest(two_seat_server.url, tmp_path, "--door", "twilio", "--callers", "1", "--turns", "1")
    assert summary["connected"] == 1 and summary["answered"] == 1 and summary["errors"] == {}, summary
    assert 0 < summary["v2v_ms"]["p50"] < 15000


def test_one_caller_through_the_realtime_door(two_seat_server, tmp_path):
    summary, _ = loadtest(two_seat_server.url, tmp_path, "--door", "realtime", "--callers", "1", "--turns", "2")
    assert summary["connected"] == 1 and summary["answered"] == 2 and summary["errors"] == {}, summary
    assert all(t["heard"] and t["reply"] for t in summary["per_turn"]), summary["per_turn"]
    assert 0 < summary["v2v_ms"]["p50"] < 15000
