"""bench/turn_taking.py's verdict on one session, from a timeline of events and reply audio: what
counts as a false cut-off, a silent continuation, an audible overlap, and the latency."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from conftest import ROOT

RATE_HZ = 16000


@pytest.fixture(scope="module")
def bench():
    sys.path[:0] = [str(ROOT / "bench")]
    spec = importlib.util.spec_from_file_location("turn_taking_metrics", ROOT / "bench" / "turn_taking_metrics.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def paused(bench):
    """1 s of speech, 1 s of pause, 1 s of speech: with the 0.5 s lead the pause starts being sent
    at ~1.5 s, the second half at 2.5 s, the last speech sample at ~3.5 s (client clock)."""
    tone = (np.sin(np.arange(RATE_HZ) * 0.3) * 8000).astype(np.int16)
    audio = np.concatenate([tone, np.zeros(RATE_HZ, np.int16), tone])
    return bench.Utterance("u", "paused", audio, "book a table for two on friday", end_sample=3 * RATE_HZ,
                           pause_s=1.0, first_half="book a table", second_half="for two on friday",
                           pause_from=RATE_HZ, resume_at=2 * RATE_HZ)


def session(bench, events, audio_at):
    rec = bench.Session(events=[(t, e) for t, e in events], audio=[(t, 0.02) for t in audio_at])
    rec.sent = [i * 0.02 for i in range(400)]
    return rec


#: input-stream positions (ms) of the halves: speech 500-1500, pause, speech 2500-3500 (+200 ms VAD padding)
WHOLE, FIRST, SECOND = (300.0, 3700.0), (300.0, 1700.0), (2300.0, 3700.0)


def final(text, utterance=1, continues=None, span=WHOLE):
    return {"type": "transcript_final", "utterance": utterance, "text": text, "continues": continues,
            "start_ms": span[0], "end_ms": span[1]}


def reply(turn, text="Sure."):
    return {"type": "agent_text", "turn": turn, "text": text, "final": True}


def test_one_answered_turn_with_both_halves_is_no_cut_off_and_latency_runs_from_the_last_speech(bench):
    rec = session(bench, [(3.9, final("Book a table for two on Friday.")), (4.0, reply(1))], [4.0, 4.02])
    r = bench.analyse(paused(bench), rec)
    assert not r["false_cutoff"] and r["answered_turns"] == 1 and not r["ended_at_pause"]
    assert r["latency_ms"] == pytest.approx((4.0 - rec.sent_at(3 * RATE_HZ - 1)) * 1000)


def test_a_continuation_before_any_reply_audio_is_silent_and_no_cut_off(bench):
    events = [(2.0, final("Book a table.", span=FIRST)),
              (2.1, {"type": "agent_text", "turn": 1, "text": "Sure", "final": False}),
              (2.7, {"type": "interrupted", "turn": 1, "played_ms": 0, "reason": "continuation"}),
              (3.9, final("Book a table for two on Friday.", 2, continues=1)), (4.0, reply(2))]
    r = bench.analyse(paused(bench), session(bench, events, [4.1]))
    assert not r["false_cutoff"] and r["ended_at_pause"]  # the turn ended at the pause; nobody heard it
    assert r["continuations"] == [{"t_s": 2.7, "audible": False}]


def test_reply_audio_before_the_user_went_on_is_a_cut_off_even_when_taken_back(bench):
    events = [(2.0, final("Book a table.", span=FIRST)),
              (2.2, {"type": "interrupted", "turn": 1, "reason": "continuation"}),
              (3.9, final("Book a table for two on Friday.", 2, continues=1)), (4.0, reply(2))]
    r = bench.analyse(paused(bench), session(bench, events, [2.1, 4.1]))
    assert r["false_cutoff"] and r["cutoff_reasons"] == ["reply audio before the user went on"]
    assert r["continuations"][0]["audible"]


def test_audio_while_the_second_half_is_spoken_is_an_audible_overlap(bench):
    events = [(2.4, final("Book a table.", span=FIRST)),
              (2.9, {"type": "interrupted", "turn": 1, "reason": "continuation"}),
              (3.9, final("Book a table for two on Friday.", 2, continues=1)), (4.0, reply(2))]
    r = bench.analyse(paused(bench), session(bench, events, [2.6, 2.62, 2.64, 4.1]))
    assert not r["false_cutoff"]  # heard only after the user went on: an overlap, reported apart
    assert r["audible_overlap_ms"] == pytest.approx(60)


def test_two_answered_turns_or_a_half_transcript_are_cut_offs(bench):
    events = [(2.0, final("Book a table.", span=FIRST)), (2.2, reply(1)),
              (3.9, final("For two on Friday.", 2, span=SECOND)), (4.0, reply(2))]
    r = bench.analyse(paused(bench), session(bench, events, [4.1]))
    assert r["false_cutoff"]
    assert r["cutoff_reasons"] == ["2 turns answered", "answered transcript lacks the first half"]


def test_end_of_turn_verdicts_are_placed_at_the_pause_or_at_the_true_end(bench):
    verdict = {"type": "end_of_turn", "utterance": 1, "complete": False, "probability": 0.1, "wait_ms": 2000.0}
    events = [(1.7, verdict), (3.7, {**verdict, "complete": True}), (3.9, final("Book a table for two on Friday.")),
              (4.0, reply(1))]
    r = bench.analyse(paused(bench), session(bench, events, [4.1]))
    assert [(d["where"], d["complete"]) for d in r["end_of_turn"]] == [("pause", False), ("end", True)]


def test_a_half_answered_alone_is_a_cut_off_whatever_the_words(bench):
    events = [(2.0, final("Well, it's no.", span=FIRST)), (2.1, reply(1))]
    r = bench.analyse(paused(bench), session(bench, events, [4.1]))
    assert r["cutoff_reasons"] == ["answered transcript lacks the second half"]


def test_a_continuation_final_without_continues_answers_both_utterances_joined(bench):
    """The server joins the words itself when the continuing final came while its reply was out."""
    events = [(2.0, final("Book a table.", 0, span=FIRST)), (2.1, reply(1)),
              (3.9, final("For two on Friday.", 1, span=SECOND)),
              (3.9, {"type": "interrupted", "turn": 1, "played_ms": 0.0, "reason": "continuation"}),
              (4.5, reply(2))]
    r = bench.analyse(paused(bench), session(bench, events, [4.6]))
    assert not r["false_cutoff"] and r["joined_without_continues"]
    assert r["answered_transcript"] == "Book a table. For two on Friday."
