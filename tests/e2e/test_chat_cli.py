"""`voice chat`: typed turns through the real server process and the real CLI, one event per line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from conftest import ROOT, start_agent_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    srv = start_agent_server(tmp_path_factory, "chat")
    yield srv
    srv.stop()


def chat(url: str, lines: list[str], *args: str) -> tuple[int, list[dict], str]:
    result = subprocess.run([sys.executable, "-m", "voice.cli", "chat", "--url", url, "--json", *args],
                            input="\n".join(lines).encode(), capture_output=True, timeout=300, cwd=ROOT)
    events = [json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("{")]
    return result.returncode, events, result.stderr.decode()


def test_a_typed_booking_conversation_is_confirmed_and_stored(chat_server):
    code, events, err = chat(chat_server.url, ["Italian, please.", "/dtmf 4", "At 8 pm.", "Yes."],
                             "--agent", "booking")
    assert code == 0, err
    states = [e for e in events if e["type"] == "state_changed"]
    assert states[0]["state"] == "booking/cuisine"  # announced at the start of the session
    assert states[-1]["state"] == "booking/confirmed"
    assert {k: states[-1]["slots"][k] for k in ("cuisine", "party_size", "time")} == {
        "cuisine": "italian", "party_size": 4, "time": "20:00"}
    calls = [e for e in events if e["type"] == "tool_call"]
    assert [c["name"] for c in calls] == ["book_table"]
    results = [e for e in events if e["type"] == "tool_result"]
    assert results[-1]["ok"] and results[-1]["id"] == calls[0]["id"]
    with sqlite3.connect(chat_server.data_dir / "bookings.sqlite3") as db:
        assert db.execute("SELECT cuisine, party_size, time FROM bookings").fetchall() == [("italian", 4, "20:00")]
    assert events[-1]["type"] == "input_ended"


def test_text_turns_produce_agent_text_and_metrics_like_spoken_ones(chat_server):
    code, events, err = chat(chat_server.url, ["What is the weather in Paris tomorrow?"], "--agent", "assistant")
    assert code == 0, err
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_call") < kinds.index("tool_result")
    # "Let me check." is spoken while the call is written: the reply's first audio, so its metrics
    # come with it, before the tool has answered
    assert kinds.index("agent_text") < kinds.index("turn_metrics") < kinds.index("tool_result")
    final = [e["text"] for e in events if e["type"] == "agent_text" and e["final"]]
    assert final and "rain" in final[0].lower()


def test_an_unknown_agent_is_refused_at_the_handshake(chat_server):
    code, _, err = chat(chat_server.url, ["hello"], "--agent", "pirate")
    assert code == 5 and "BAD_MESSAGE" in err and "pirate" in err
