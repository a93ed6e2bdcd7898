"""Turn-taking end to end through the real server: smart end of turn vs a fixed 500 ms silence.

The set is built, not picked, and is the same on every run (seeded):
- "paused": real read speech (the LibriVox clips of Debian's pocketsphinx-testdata) and Piper
  (joe voice) requests of our own, with a silence inserted at one mid-sentence word boundary
  (faster-whisper tiny.en `word_timestamps=True` on the clean audio, snapped to the quietest 10 ms
  nearby; never after the first word or before the last; seeded choice). Pauses: 14 spread evenly
  over 0.7–1.2 s, two of 0.6 s, two of 1.5 s, assigned to utterances by a seeded shuffle;
- "complete": Piper requests and questions spoken in one go.

Each utterance is one session on `voice serve` (started here, own data folder, cpu profile),
streamed as PCM16 16 kHz in real time on one clock (a mic never sends faster than real time),
then 4 s of silence and end_of_input; we keep every event and the arrival of every reply audio
frame. Both modes run per utterance in the same run, one after the other, the order alternating
per utterance (AB, BA, ...), so drift and warm caches hit both alike. The modes are HELLO options:
smart = {"turn": {"mode": "smart"}} (eagerness auto), baseline = {"turn": {"mode": "silence",
"max_silence_ms": 500}}.

Metrics (times are the client's: when a frame was sent or received):
- false cut-off (paused): a reply's first audio arrived before the second half started being sent;
  or more than one user turn got answered (an agent_text final whose turn was not interrupted);
  or the answered transcript lacks the second half (or the first: the sentence was split in two
  turns). Reported apart: audible overlaps (reply audio arriving while the user speaks the second
  half), continuations (`interrupted` reason "continuation"), silent ones (before any reply audio
  reached us: the user never heard it, not a cut-off) and audible ones.
- latency: the last speech sample sent (energy: within 35 dB of the loudest 20 ms) -> the first
  reply audio frame received after it; and the server's own turn_metrics voice_to_voice.
- end_of_turn decisions (smart only) at the inserted pause vs at the true end.

Usage: flock /tmp/heavy.lock .venv/bin/python bench/turn_taking.py [--part pauses|complete|all]
A part's runs replace that part in bench/results/turn_taking.json; the summary covers all parts.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import itertools
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from asr_latency import last_speech_sample  # noqa: E402
from common import RESULTS, machine, write_results  # noqa: E402
from speech_data import librivox_clips, load_wav_16k  # noqa: E402
from turn_detector import SNAP_MS, _quietest  # noqa: E402
from turn_taking_metrics import (  # noqa: E402
    FRAME,
    LEAD_S,
    MODES,
    RATE_HZ,
    TAIL_S,
    TARGET_PAUSES_S,
    Session,
    Utterance,
    analyse,
    print_report,
    summarise,
)
from voice_to_voice import speech, start_server_in  # noqa: E402

from voice.client import ClientOptions, ReceivedAudio, VoiceClient  # noqa: E402

SEED = 20261125
SESSION_TIMEOUT_S = 90.0
SET_VERSION = 2  # bump when the way the set is built changes (the /tmp cache is keyed on it)
RESULTS_FORMAT = 3  # bump when a run's recorded fields change (older parts are not merged)

#: Requests a caller makes, ending in a place, number or time; none is in tests/ (written before
#: any run). Spoken with a pause inside.
PAUSED_SENTENCES = (
    "Could you book a table for two at the Italian place on Friday at eight?",
    "What will the weather be like in Barcelona on Saturday afternoon?",
    "Remind me to pick up the dry cleaning tomorrow at five thirty.",
    "I need a taxi from the central station to the Hilton hotel at nine.",
    "How long does the ferry to the island take on a Sunday morning?",
    "Can you move my dentist appointment to next Wednesday at ten?",
    "Is the swimming pool on Elm Road open until nine tonight?",
    "Please set a reminder to renew my car insurance in three weeks.",
    "Will it snow in Denver over the weekend?",
    "I'd like to reserve a room for three nights starting on the fourteenth.",
    "What's the fastest way to get from the museum to the harbour?",
    "Could you check if the bakery on Queen Street delivers before seven?",
    "Remind me to send the report to Julia on Monday morning.",
)
#: Spoken in one go.
COMPLETE_SENTENCES = (
    "What's the weather like in Lisbon today?",
    "Can I book a table for four at seven tonight?",
    "Remind me to call the electrician at noon.",
    "How far is the airport from the city centre?",
    "What time does the museum open on Sundays?",
    "Is it going to be windy in Chicago tomorrow?",
    "Please remind me to take my medicine at nine.",
    "Do you have any rooms available next Friday?",
    "How many minutes are in two hours?",
    "What's a good gift for a ten year old?",
    "Could you recommend a quiet cafe near the park?",
    "Will it rain in Amsterdam this evening?",
    "I'd like to change my booking to half past six.",
    "What is the tallest mountain in Europe?",
)


# ---------------------------------------------------------------------------- the set


def first_speech_sample(audio: np.ndarray) -> int:
    """Start of the first 20 ms frame within 35 dB of the loudest one (as last_speech_sample)."""
    return len(audio) - last_speech_sample(audio[::-1].copy())


def aligned_words(aligner, audio: np.ndarray) -> tuple[list[str], list[int]]:
    """Whisper's words and, between each pair, the quietest sample near their boundary."""
    pcm = audio.astype(np.float32) / 32768
    segments, _ = aligner.transcribe(pcm, language="en", beam_size=1, word_timestamps=True,
                                     condition_on_previous_text=False)
    words = [w for s in segments for w in s.words]
    cuts = [_quietest(pcm, a.end - SNAP_MS / 1000, max(a.end, b.start) + SNAP_MS / 1000)
            for a, b in itertools.pairwise(words)]
    return [w.word.strip() for w in words], cuts


def with_pause(name: str, clean: np.ndarray, words: list[str], cuts: list[int], pause_s: float,
               rng: np.random.Generator) -> Utterance:
    """`clean` with `pause_s` of silence at a seeded mid-sentence boundary (not after the first
    word, not before the last)."""
    k = int(rng.integers(1, len(cuts) - 1))
    cut = cuts[k]
    head, tail = clean[:cut], clean[cut:]
    audio = np.concatenate([head, np.zeros(round(pause_s * RATE_HZ), np.int16), tail])
    resume_at = len(head) + round(pause_s * RATE_HZ) + first_speech_sample(tail)
    return Utterance(name, "paused", audio, " ".join(words), end_sample=last_speech_sample(audio), pause_s=pause_s,
                     first_half=" ".join(words[:k + 1]), second_half=" ".join(words[k + 1:]),
                     pause_from=last_speech_sample(head), resume_at=resume_at)


def pause_lengths(n: int, rng: np.random.Generator) -> list[float]:
    target = np.round(np.linspace(*TARGET_PAUSES_S, n - 4), 2).tolist()
    return [float(x) for x in rng.permutation([0.6, 0.6, 1.5, 1.5, *target])]


def build_set() -> list[Utterance]:
    from faster_whisper import WhisperModel

    from voice.models import model_path

    aligner = WhisperModel(str(model_path("whisper-tiny.en")), device="cpu", compute_type="int8", cpu_threads=2)
    rng = np.random.default_rng(SEED)
    sources = [(f"librivox-{p.stem[-4:]}", (load_wav_16k(p) * 32767).astype(np.int16)) for p, _ in librivox_clips()]
    sources += [(f"piper-p{i:02d}", speech(t)) for i, t in enumerate(PAUSED_SENTENCES)]
    pauses = pause_lengths(len(sources), rng)
    items = []
    for (name, clean), pause_s in zip(sources, pauses, strict=True):
        words, cuts = aligned_words(aligner, clean)
        items.append(with_pause(name, clean, words, cuts, pause_s, rng))
    for i, text in enumerate(COMPLETE_SENTENCES):
        audio = speech(text)
        items.append(Utterance(f"piper-c{i:02d}", "complete", audio, text, end_sample=last_speech_sample(audio)))
    return items


def cached_set() -> list[Utterance]:
    """The set, built once per content (Piper and Whisper take a minute) and kept in /tmp."""
    key = hashlib.sha256(repr((PAUSED_SENTENCES, COMPLETE_SENTENCES, SEED, TARGET_PAUSES_S, SET_VERSION))
                         .encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"turn_taking_set_{key}.pkl"
    if path.is_file():
        return [Utterance(**fields) for fields in pickle.loads(path.read_bytes())]
    items = build_set()
    path.write_bytes(pickle.dumps([dataclasses.asdict(u) for u in items]))  # plain data: any importer reads it
    return items


# ---------------------------------------------------------------------------- one session


async def run_session(url: str, utt: Utterance, options: dict) -> Session:
    client = VoiceClient(url, ClientOptions(input_codec="pcm16", input_rate_hz=RATE_HZ, output_codec="pcm16",
                                            output_rate_hz=RATE_HZ,
                                            options={**options, "call": {"greeting": ""}}))
    await client.connect()
    rec = Session()
    t0 = time.monotonic()

    async def receive() -> None:
        async for item in client.messages():
            now = time.monotonic() - t0
            if isinstance(item, ReceivedAudio):
                rec.audio.append((now, len(item.samples) / RATE_HZ))
            elif hasattr(item, "model_dump"):
                rec.events.append((now, item.model_dump(exclude_none=True)))
                if rec.events[-1][1].get("type") == "input_ended":
                    return

    receiver = asyncio.create_task(receive())
    signal = np.concatenate([np.zeros(round(LEAD_S * RATE_HZ), np.int16), utt.audio,
                             np.zeros(round(TAIL_S * RATE_HZ), np.int16)])
    for pos in range(0, len(signal), FRAME):
        await asyncio.sleep(max(0.0, t0 + len(rec.sent) * 0.02 - time.monotonic()))
        rec.sent.append(time.monotonic() - t0)
        await client.send_audio(signal[pos:pos + FRAME])
    await client.end_input()
    try:
        await asyncio.wait_for(receiver, SESSION_TIMEOUT_S)
    finally:
        await client.close()
    return rec


# ---------------------------------------------------------------------------- what happened


def progress(i: int, n: int, mode: str, utt: Utterance, r: dict) -> str:
    where = f"pause {utt.pause_s:.2f} s after '{utt.first_half.split()[-1]}'" if utt.kind == "paused" else "no pause"
    lat = f"{r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else "-"
    cut = f" CUT-OFF ({'; '.join(r['cutoff_reasons'])})" if r.get("false_cutoff") else ""
    return (f"[{i}/{n}] {utt.name:13} {mode:11} {where:34} answered {r['answered_turns']}, "
            f"continuations {len(r['continuations'])}, end->audio {lat}{cut}")


# ---------------------------------------------------------------------------- the run


def run_part(utts: list[Utterance], warm: Utterance, profile: str, tree: Path | None) -> list[dict]:
    data_dir = tempfile.mkdtemp(prefix="turn-taking-data-")
    server = start_server_in(tree, profile, {"VOICE_DATA_DIR": data_dir, "VOICE_LLM__TEMPERATURE": "0"})
    runs = []
    try:
        asyncio.run(run_session(server.url, warm, MODES["smart"]))  # first-call costs: not counted
        for i, utt in enumerate(utts):
            order = list(MODES) if i % 2 == 0 else list(MODES)[::-1]
            for mode in order:
                try:
                    rec = asyncio.run(run_session(server.url, utt, MODES[mode]))
                except Exception as e:  # one failed session is reported, the run goes on
                    runs.append({"mode": mode, "name": utt.name, "kind": utt.kind, "error": repr(e)})
                    print(f"[{i + 1}/{len(utts)}] {utt.name} {mode}: FAILED {e!r}", flush=True)
                    continue
                r = {"mode": mode, **analyse(utt, rec), "audio_spans_s": spans(rec.audio),
                     "events": [(round(t, 3), e) for t, e in rec.events if e.get("type") != "transcript_partial"]}
                runs.append(r)
                print(progress(i + 1, len(utts), mode, utt, r), flush=True)
    finally:
        server.stop()
    return runs


def spans(audio: list[tuple[float, float]]) -> list[list[float]]:
    """Reply audio as [first arrival, last arrival] runs (a gap over 0.3 s starts a new run)."""
    out: list[list[float]] = []
    for t, _ in audio:
        if out and t - out[-1][1] <= 0.3:
            out[-1][1] = round(t, 3)
        else:
            out.append([round(t, 3), round(t, 3)])
    return out


def code_state() -> dict:
    """Which server code ran: HEAD, and whether voice/ had uncommitted changes (a hash of them)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    diff = git("diff", "HEAD", "--", "voice")
    return {"head": git("rev-parse", "--short", "HEAD").strip(), "voice_uncommitted": bool(diff),
            "voice_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("pauses", "complete", "all"), default="all")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--limit", type=int, help="only the first N utterances of each part (a quick check)")
    ap.add_argument("--tree", type=Path, help="run the server from this checkout (default: this working tree)")
    ap.add_argument("--show-set", action="store_true", help="print the utterances and their pauses, run nothing")
    args = ap.parse_args()
    utts = cached_set()
    if args.show_set:
        for u in utts:
            print(f"{u.name:14} {u.pause_s:4.2f} s  {u.first_half} | {u.second_half}" if u.kind == "paused"
                  else f"{u.name:14} {'-':>6}  {u.text}")
        return
    warm = next(u for u in utts if u.kind == "complete")
    path = RESULTS / "turn_taking.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    # a part stored by another version of the analysis is not comparable: dropped (rerun it)
    parts = {k: p for k, p in previous.get("parts", {}).items() if p.get("format") == RESULTS_FORMAT}
    for part, kind in (("pauses", "paused"), ("complete", "complete")):
        if args.part not in (part, "all"):
            continue
        mine = [u for u in utts if u.kind == kind][:args.limit]
        print(f"{part}: {len(mine)} utterances x {len(MODES)} modes, profile {args.profile}", flush=True)
        runs = run_part(mine, warm, args.profile, args.tree)
        parts[part] = {"format": RESULTS_FORMAT, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "machine": machine(), "code": code_state(),
                       "tree": str(args.tree or "."), "limit": args.limit, "runs": runs}
    result = summarise([r for p in parts.values() for r in p["runs"]])
    print_report(result)
    write_results("turn_taking", {
        "settings": {"profile": args.profile, "modes": MODES, "seed": SEED, "lead_s": LEAD_S, "tail_s": TAIL_S,
                     "target_pause_range_s": TARGET_PAUSES_S, "asr": "whisper-tiny.en", "tts_for_speech": "piper-joe",
                     "llm_temperature": 0},
        **result, "parts": parts})


if __name__ == "__main__":
    main()
