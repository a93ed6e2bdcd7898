"""bench/turn_taking.py's arithmetic, apart from its I/O: one session's outcome from its timeline
(events and reply audio on the client's clock), and the numbers per mode. Definitions: see
bench/turn_taking.py's docstring."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from common import print_table, summary

RATE_HZ = 16000
FRAME = RATE_HZ // 50  # 20 ms, one mic frame
LEAD_S, TAIL_S = 0.5, 4.0  # silence before and after each utterance
TARGET_PAUSES_S = (0.7, 1.2)  # the issue's range for "≤ 1 false cut-off in 12"
MODES = {"smart": {"turn": {"mode": "smart"}},
         "silence-500": {"turn": {"mode": "silence", "max_silence_ms": 500}}}
STAGES = ("final_transcript", "first_llm_token", "first_tts_audio", "voice_to_voice")


@dataclass
class Utterance:
    name: str
    kind: str  # "paused" | "complete"
    audio: np.ndarray  # int16 16 kHz, pause included
    text: str  # Whisper's words on the clean audio
    end_sample: int  # just past the last speech sample
    pause_s: float = 0.0  # inserted silence
    first_half: str = ""
    second_half: str = ""
    pause_from: int = 0  # just past the last speech sample before the pause
    resume_at: int = 0  # the first speech sample after it


@dataclass
class Session:
    """What one session sent and got, on the client's monotonic clock (s since the first frame)."""

    events: list[tuple[float, dict]] = field(default_factory=list)
    audio: list[tuple[float, float]] = field(default_factory=list)  # (arrival, duration s)
    sent: list[float] = field(default_factory=list)  # send time of each 20 ms frame

    def sent_at(self, sample: int) -> float:
        """When the frame holding `sample` of the utterance (after the lead) was sent."""
        return self.sent[min((round(LEAD_S * RATE_HZ) + sample) // FRAME, len(self.sent) - 1)]


# ---------------------------------------------------------------------------- one session


def stream_ms(sample: int) -> float:
    """Position of an utterance's sample in the session's input stream (the lead included), ms;
    the server's transcript_final start_ms / end_ms are positions on the same scale."""
    return (LEAD_S * RATE_HZ + sample) * 1000 / RATE_HZ


def agent_turns(events: list[tuple[float, dict]]) -> dict[int, dict]:
    """Each agent turn: the user's words it answered (text, utterance, [start_ms, end_ms] of input
    audio), its reply, how it ended. A turn answers the last final before it; after a continuation
    whose final has no `continues` (the server joined the words itself), the retracted turn's words
    and that final's."""
    turns: dict[int, dict] = {}
    final: dict = {}
    retracted: dict | None = None
    for t, e in events:
        kind, n = e.get("type"), e.get("turn")
        if kind == "transcript_final" and e.get("text", "").strip():
            final = e
            continue
        if kind not in ("agent_text", "interrupted", "turn_metrics"):
            continue
        if n not in turns:
            turns[n] = asked(final, retracted) | {"first_event_s": t}
            retracted = None
        if kind == "agent_text" and e.get("final"):
            turns[n]["reply"] = e["text"]
        elif kind == "interrupted":
            turns[n]["interrupted"] = e.get("reason")
            retracted = turns[n] if e.get("reason") == "continuation" else None
        elif kind == "turn_metrics":
            turns[n]["stages_ms"] = e["stages_ms"]
    return turns


def asked(final: dict, retracted: dict | None) -> dict:
    if not final:
        return {"transcript": "", "utterance": None, "span_ms": None}
    own = {"transcript": final["text"], "utterance": final.get("utterance"),
           "span_ms": [final.get("start_ms"), final.get("end_ms")]}
    if retracted is None or final.get("continues") is not None or final.get("utterance") == retracted["utterance"] \
            or retracted["span_ms"] is None:
        return own
    return {"transcript": f"{retracted['transcript']} {final['text']}", "utterance": final.get("utterance"),
            "span_ms": [retracted["span_ms"][0], final.get("end_ms")], "joined_without_continues": True}


def analyse(utt: Utterance, rec: Session) -> dict:
    """One session's outcome: the turns answered, what was heard when, the cut-off verdict."""
    t_end = rec.sent_at(utt.end_sample - 1)
    t_resume = rec.sent_at(utt.resume_at) if utt.kind == "paused" else None
    t_pause = rec.sent_at(utt.pause_from - 1) if utt.kind == "paused" else None
    first_audio = rec.audio[0][0] if rec.audio else None
    turns = agent_turns(rec.events)
    continuations = [{"t_s": t, "audible": first_audio is not None and first_audio < t} for t, e in rec.events
                     if e.get("type") == "interrupted" and e.get("reason") == "continuation"]
    decisions = []
    for t, e in rec.events:
        if e.get("type") == "end_of_turn":
            where = "end" if t >= t_end else "pause" if t_pause is not None and t_pause <= t <= t_resume + 0.5 \
                else "other"
            decisions.append({"where": where, "t_s": round(t, 3), "after_speech_end_ms": round((t - t_end) * 1000),
                              **{k: e.get(k) for k in ("complete", "probability", "audio_probability", "reason",
                                                       "wait_ms")}})
    answered = [n for n, x in sorted(turns.items()) if "reply" in x and not x.get("interrupted")]
    last = turns[answered[-1]] if answered else {}
    after_end = [t for t, _ in rec.audio if t >= t_end]
    out = {
        "name": utt.name, "kind": utt.kind, "pause_s": utt.pause_s, "text": utt.text,
        "answered_turns": len(answered), "answered_transcript": last.get("transcript"),
        "answered_span_ms": last.get("span_ms"), "reply": last.get("reply"), "turns": turns,
        "continuations": continuations, "end_of_turn": decisions, "first_audio_s": first_audio,
        "speech_end_s": round(t_end, 3), "latency_ms": (after_end[0] - t_end) * 1000 if after_end else None,
        "server_stages_ms": last.get("stages_ms", {}),
        "early_audio": first_audio is not None and first_audio < t_end,
        "joined_without_continues": any(x.get("joined_without_continues") for x in turns.values()),
    }
    if utt.kind == "paused":
        out |= paused_verdict(utt, rec, out, t_pause, t_resume, t_end)
    return out


def paused_verdict(utt: Utterance, rec: Session, out: dict, t_pause: float, t_resume: float, t_end: float) -> dict:
    """Cut off or not. Whether the answer covered both halves is read from the input audio its
    words came from (span_ms, ±200 ms of VAD padding), not from Whisper's words, which differ
    between decodes."""
    reasons = []
    if out["first_audio_s"] is not None and out["first_audio_s"] < t_resume:
        reasons.append("reply audio before the user went on")
    if out["answered_turns"] > 1:
        reasons.append(f"{out['answered_turns']} turns answered")
    span = out["answered_span_ms"]
    if out["answered_turns"] and span and None not in span:
        if span[1] < stream_ms(utt.end_sample) - 200:
            reasons.append("answered transcript lacks the second half")
        if span[0] > stream_ms(utt.pause_from) - 200:
            reasons.append("answered transcript lacks the first half")
    overlap_ms = sum(d for t, d in rec.audio if t_resume <= t <= t_end) * 1000
    # the end-of-turn decision alone: a final of the first half means the turn was ended at the pause
    # (what the old server, without continuation, answered as a turn of its own)
    ended_at_pause = any(e.get("type") == "transcript_final" and e.get("text", "").strip()
                         and (e.get("end_ms") or 0) < stream_ms(utt.resume_at) for _, e in rec.events)
    return {"ended_at_pause": ended_at_pause,
            "first_half": utt.first_half, "second_half": utt.second_half, "pause_from_s": round(t_pause, 3),
            "resume_s": round(t_resume, 3), "gap_ms": round((utt.resume_at - utt.pause_from) * 1000 / RATE_HZ),
            "false_cutoff": bool(reasons), "cutoff_reasons": reasons, "audible_overlap_ms": round(overlap_ms)}


# ---------------------------------------------------------------------------- the numbers


def cutoff_counts(runs: list[dict]) -> dict:
    n = len(runs)
    cut = sum(r["false_cutoff"] for r in runs)
    reasons: dict[str, int] = {}
    for r in runs:
        for why in r["cutoff_reasons"]:
            key = why if "turns answered" not in why else "more than one turn answered"
            reasons[key] = reasons.get(key, 0) + 1
    conts = [c for r in runs for c in r["continuations"]]
    return {"n": n, "ended_at_pause": sum(r["ended_at_pause"] for r in runs),
            "false_cutoffs": cut, "false_cutoff_rate": cut / n if n else None, "reasons": reasons,
            "audible_overlaps": sum(r["audible_overlap_ms"] > 0 for r in runs),
            "audible_overlap_ms": summary([r["audible_overlap_ms"] for r in runs if r["audible_overlap_ms"] > 0]),
            "continuations": len(conts), "continuations_silent": sum(not c["audible"] for c in conts),
            "continuations_audible": sum(c["audible"] for c in conts),
            "unanswered": sum(r["answered_turns"] == 0 for r in runs),
            "continuation_finals_without_continues": sum(r["joined_without_continues"] for r in runs),
            "cut_off": [r["name"] for r in runs if r["false_cutoff"]]}


def latency(runs: list[dict]) -> dict:
    """Client: last speech sample sent -> first reply audio received; server: its turn_metrics
    stages of the answered turn (ms from the end of speech)."""
    return {"client_ms": summary([r["latency_ms"] for r in runs if r["latency_ms"] is not None]),
            **{f"server_{k}_ms": summary([r["server_stages_ms"][k] for r in runs if k in r["server_stages_ms"]])
               for k in STAGES}}


def decisions(runs: list[dict]) -> dict:
    """end_of_turn verdicts by where they fell: at the inserted pause, at the true end, elsewhere."""
    out = {}
    for where in ("pause", "end", "other"):
        ds = [d for r in runs for d in r["end_of_turn"] if d["where"] == where]
        out[where] = {"n": len(ds), "complete": sum(bool(d["complete"]) for d in ds),
                      "probability": summary([d["probability"] for d in ds if d["probability"] is not None]),
                      "audio_probability": summary([d["audio_probability"] for d in ds
                                                    if d["audio_probability"] is not None]),
                      # how long after the last speech sample a "complete" verdict came (end only)
                      "complete_after_speech_end_ms": summary([d["after_speech_end_ms"] for d in ds
                                                               if d["complete"] and where == "end"])}
    return out


def summarise(runs: list[dict]) -> dict:
    by_mode = {}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode and "error" not in r]
        paused = [r for r in mine if r["kind"] == "paused"]
        target = [r for r in paused if TARGET_PAUSES_S[0] <= r["pause_s"] <= TARGET_PAUSES_S[1]]
        complete = [r for r in mine if r["kind"] == "complete"]
        by_mode[mode] = {
            "paused_target_range": cutoff_counts(target), "paused_all": cutoff_counts(paused),
            "complete": {**latency(complete), "n": len(complete),
                         "answered_once": sum(r["answered_turns"] == 1 for r in complete),
                         "early_audio": sum(r["early_audio"] for r in complete)},
            # a cut-off's first audio after the end may be the tail of the reply to the first half
            "paused_end_to_audio": latency([r for r in paused if not r["false_cutoff"]]),
            "end_of_turn": decisions(mine)}
    return {"modes": by_mode, "ratios_smart_vs_silence_500": ratios(by_mode),
            "failed_sessions": [f"{r['name']} {r['mode']}: {r['error']}" for r in runs if "error" in r]}


def ratios(by_mode: dict) -> dict:
    a, b = by_mode["smart"], by_mode["silence-500"]

    def r(x: float, y: float) -> float | None:
        return x / y if y and x == x and y == y else None  # x == x: not NaN

    return {"complete_client_p50": r(a["complete"]["client_ms"]["p50"], b["complete"]["client_ms"]["p50"]),
            "complete_client_p95": r(a["complete"]["client_ms"]["p95"], b["complete"]["client_ms"]["p95"]),
            "complete_server_v2v_p50": r(a["complete"]["server_voice_to_voice_ms"]["p50"],
                                         b["complete"]["server_voice_to_voice_ms"]["p50"]),
            "complete_final_transcript_p50": r(a["complete"]["server_final_transcript_ms"]["p50"],
                                               b["complete"]["server_final_transcript_ms"]["p50"]),
            "false_cutoffs_target_range": r(a["paused_target_range"]["false_cutoffs"],
                                            b["paused_target_range"]["false_cutoffs"])}


def print_report(s: dict) -> None:
    modes = s["modes"]
    rows = []
    for mode, m in modes.items():
        rows += [(f"{mode} complete: end -> first audio", m["complete"]["client_ms"]),
                 *[(f"{mode} complete: server {k}", m["complete"][f"server_{k}_ms"]) for k in STAGES],
                 (f"{mode} paused, not cut off: end -> audio", m["paused_end_to_audio"]["client_ms"])]
    print_table("Turn-taking latency (client clock; server turn_metrics)", rows)
    print(f"\n{'paused utterances':26} {'n':>3} {'ended at pause':>15} {'cut-off':>8} {'overlap':>8} {'cont.':>6} "
          f"{'silent':>7} {'unans.':>7}")
    for mode, m in modes.items():
        for label, c in (("0.7-1.2 s", m["paused_target_range"]), ("all", m["paused_all"])):
            print(f"{mode + ' ' + label:26} {c['n']:>3} {c['ended_at_pause']:>15} {c['false_cutoffs']:>8} "
                  f"{c['audible_overlaps']:>8} {c['continuations']:>6} {c['continuations_silent']:>7} "
                  f"{c['unanswered']:>7}")
    print(f"\n{'end_of_turn (smart)':20} {'n':>4} {'complete':>9} {'P p50':>7} {'audio P p50':>12}")
    for where, d in modes["smart"]["end_of_turn"].items():
        print(f"{where:20} {d['n']:>4} {d['complete']:>9} {d['probability']['p50']:>7.2f} "
              f"{d['audio_probability']['p50']:>12.2f}")
    late = modes["smart"]["end_of_turn"]["end"]["complete_after_speech_end_ms"]
    print(f"a 'complete' verdict at the true end came {late['p50']:.0f} ms (p50) / {late['p95']:.0f} ms (p95) "
          "after the last speech sample was sent")
    print("\nratios smart / silence-500: " + ", ".join(
        f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in s["ratios_smart_vs_silence_500"].items()))
