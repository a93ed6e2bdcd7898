"""The call's lifecycle through the real server and the real `voice mic` CLI: re-prompts after
silence and the goodbye that ends the call, the maximum call duration; and a server whose
end-of-turn model is missing (one clear line, turns still end on words and silence)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, start_server
from piper_speech import synthesize
from speech_data import wer

pytestmark = pytest.mark.e2e


def mic(url: str, wav, *options: str, timeout_s: float = 120) -> tuple[subprocess.CompletedProcess, list[dict]]:
    args = [sys.executable, "-m", "voice.cli", "mic", "--url", url, "--input", str(wav), "--json", "--no-playback",
            "--timeout", "30"]
    for option in options:
        args += ["--option", option]
    result = subprocess.run(args, capture_output=True, timeout=timeout_s, cwd=ROOT)
    events = [json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("{")]
    return result, events


def silence_wav(folder, seconds: float):
    path = folder / f"silence-{seconds}.wav"
    sf.write(str(path), np.zeros(int(16000 * seconds), np.int16), 16000, subtype="PCM_16")
    return path


def said(events: list[dict]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "agent_text" and e["final"]]


def test_silence_gets_a_reprompt_then_a_goodbye_and_the_call_ends(server, tmp_path):
    started = time.monotonic()
    result, events = mic(server.url, silence_wav(tmp_path, 20.0), 'call={"reprompt_after_s": 1.5, '
                         '"max_reprompts": 1, "reprompt_line": "Are you still there?"}')
    assert result.returncode == 0, result.stderr.decode()
    assert said(events)[0] == "Are you still there?", said(events)
    assert len(said(events)) == 2 and "goodbye" in said(events)[1].lower(), said(events)
    assert [e["reason"] for e in events if e["type"] == "call_ending"] == ["no_response"]
    assert time.monotonic() - started < 20, "the call should end before the input does"


def test_the_call_ends_at_its_maximum_duration(server, tmp_path):
    result, events = mic(server.url, silence_wav(tmp_path, 12.0), 'call={"max_call_s": 2, "reprompt_after_s": null}')
    assert result.returncode == 0, result.stderr.decode()
    assert [e["reason"] for e in events if e["type"] == "call_ending"] == ["max_duration"]
    assert said(events) and "goodbye" in said(events)[-1].lower()


def test_without_the_end_of_turn_model_the_server_says_so_once_and_turns_still_end(tmp_path_factory, tmp_path):
    srv = start_server(tmp_path_factory.mktemp("no-turn-model"), env={
        "VOICE_TURN__MODEL": str(tmp_path / "missing-smart-turn.onnx"), "VOICE_LLM__TEMPERATURE": "0"})
    try:
        audio, rate = synthesize("How many days are there in a week?")
        wav = tmp_path / "q.wav"
        sf.write(str(wav), np.concatenate([np.zeros(rate // 2, np.int16), audio, np.zeros(rate * 3, np.int16)]),
                 rate, subtype="PCM_16")
        result, events = mic(srv.url, wav)
        log = srv.log()
    finally:
        srv.stop()
    assert result.returncode == 0, result.stderr.decode()
    lines = [line for line in log.splitlines() if "end-of-turn audio model unavailable" in line]
    assert len(lines) == 1 and "missing-smart-turn.onnx" in lines[0], lines  # names what is missing
    finals = [e["text"] for e in events if e["type"] == "transcript_final" and e["text"]]
    assert finals and wer("How many days are there in a week?", finals[0]) <= 0.25, finals
    assert said(events), "no reply"
    assert "Traceback" not in log
