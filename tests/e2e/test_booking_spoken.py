"""The booking flow completed by voice: real server process, real `voice mic` CLI, Piper speech.

One WAV holds every user turn, separated by silences long enough for each spoken reply (the
agent must be heard out: an answer that overlaps the confirmation question would barge in on it).
The CLI streams it in real time and waits for input_ended, i.e. for the last reply.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, start_agent_server
from piper_speech import synthesize

pytestmark = pytest.mark.e2e

# Worded for whisper-tiny.en: "eight" alone comes out as "aid" or "a day"; "six people" does not.
TURNS = ("I would like Italian food, please.", "We are four people.", "Seven thirty in the evening.",
         "No, we are six people.", "Yes, please.")
GAP_S = 13.0  # ASR final + the longest reply ("So that's a table for ... Shall I book it?", ~6 s) + margin
GREETING_S = 11.0  # the booking agent speaks first (~7 s of greeting, after a second of synthesis)


@pytest.fixture(scope="module")
def booking_server(tmp_path_factory):
    srv = start_agent_server(tmp_path_factory, "booking")
    yield srv
    srv.stop()


def conversation_wav(folder) -> str:
    rate = 22050
    parts = [np.zeros(int(GREETING_S * rate), np.int16)]  # a caller listens to the greeting first
    for text in TURNS:
        audio, rate = synthesize(text)
        parts += [np.zeros(int(0.5 * rate), np.int16), audio, np.zeros(int(GAP_S * rate), np.int16)]
    path = folder / "booking_turns.wav"
    sf.write(str(path), np.concatenate(parts), rate, subtype="PCM_16")
    return str(path)


def test_a_spoken_booking_reaches_confirmed_with_one_stored_booking(booking_server, tmp_path):
    result = subprocess.run([sys.executable, "-m", "voice.cli", "mic", "--url", booking_server.url,
                             "--input", conversation_wav(tmp_path), "--json", "--no-playback",
                             "--option", 'agent="booking"', "--timeout", "120"],
                            capture_output=True, timeout=400, cwd=ROOT)
    assert result.returncode == 0, result.stderr.decode()
    events = [json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("{")]
    heard = [e["text"] for e in events if e["type"] == "transcript_final" and e["text"]]
    said = [e["text"] for e in events if e["type"] == "agent_text" and e["final"]]
    story = f"heard: {heard}\nsaid: {said}"
    assert len(heard) == len(TURNS), story
    assert not [e for e in events if e["type"] == "interrupted"], story
    states = [e for e in events if e["type"] == "state_changed"]
    assert said[0].startswith("Hello, thank you for calling"), story  # the agent spoke first
    assert states[-1]["state"] == "booking/confirmed", story
    assert {k: states[-1]["slots"][k] for k in ("cuisine", "party_size", "time")} == {
        "cuisine": "italian", "party_size": 6, "time": "19:30"}, story
    assert "booked" in said[-1], story
    with sqlite3.connect(booking_server.data_dir / "bookings.sqlite3") as db:
        assert db.execute("SELECT cuisine, party_size, time FROM bookings").fetchall() == [("italian", 6, "19:30")]
