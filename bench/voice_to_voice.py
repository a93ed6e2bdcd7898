"""Voice-to-voice latency: end of the user's speech -> first audio frame of the agent's reply.

Runs the real server (`voice serve`, cpu profile unless --profile) and speaks questions to it
in real time over the protocol, several turns per session, waiting for each reply to finish.
Reports p50/p95 of each stage from the server's turn_metrics events (end of speech -> final
transcript -> first LLM token -> first TTS audio -> first audio frame sent) and the client's own
measurement (last speech sample sent -> first reply frame received).

Baseline (same run, same engines): a non-streaming pipeline that waits for the whole LLM reply
and synthesizes it before playing anything; its first audio would come at
(agent_text final received) + (Piper time for the whole reply text). Ratio = streaming / baseline.

Tool turns (a weather question every `--tool-every` turns; a turn counts as one when the agent
called a tool) are reported apart: end of speech -> first audio, and -> the tool's result event.
`--baseline-tree DIR` runs the same turns against a second server started from another checkout
of the code (e.g. `git worktree add /tmp/before <commit>`), in the same run: an A/B whose ratio is
this tree's tool-turn p50 / the baseline tree's. `--tree DIR` runs this side from a checkout too,
so both sides are committed code, untouched by uncommitted work in the working tree.

Usage: .venv/bin/python bench/voice_to_voice.py [--sessions 3] [--turns 4] [--profile cpu]
                                                [--tool-every 2] [--tree DIR] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from asr_latency import last_speech_sample  # noqa: E402
from common import print_table, summary, write_results  # noqa: E402
from conftest import start_server  # noqa: E402
from piper_speech import synthesize  # noqa: E402

from voice.client import ClientOptions, ReceivedAudio, VoiceClient  # noqa: E402
from voice.codecs.resample import resample  # noqa: E402

RATE_HZ = 16000
OUTPUT_RATE_HZ = 48000  # the reply audio the bench asks for
FRAME = RATE_HZ // 50
TURN_TIMEOUT_S = 30.0
TOOL_QUESTIONS = (
    "What's the weather in Paris tomorrow?", "Is it going to rain in London today?",
    "How hot will it be in Madrid tomorrow?", "Will I need an umbrella in Berlin today?",
    "What's the forecast for Tokyo tomorrow?", "Is it sunny in Rome today?",
)
QUESTIONS = (
    "What is the capital of France?", "How many days are there in a week?",
    "What color is the sky on a clear day?", "Can you suggest a name for a black cat?",
    "What is two plus three?", "Which ocean is the largest?",
    "How do I boil an egg?", "What should I wear when it rains?",
    "Tell me a fun fact about bees.", "What is the opposite of hot?",
    "How many legs does a spider have?", "What do you call a baby dog?",
)


def speech(text: str) -> np.ndarray:
    audio, rate = synthesize(text)
    return (resample(audio.astype(np.float32) / 32768, rate, RATE_HZ) * 32767).astype(np.int16)


async def run_session(url: str, questions: list[np.ndarray]) -> list[dict]:
    client = VoiceClient(url, ClientOptions(input_codec="opus", input_rate_hz=RATE_HZ,
                                            output_codec="opus", output_rate_hz=OUTPUT_RATE_HZ))
    await client.connect()
    turns: list[dict] = []
    current: dict = {}
    reply_done = asyncio.Event()

    async def receive() -> None:
        async for item in client.messages():
            now = time.perf_counter()
            if isinstance(item, ReceivedAudio):
                clock["last_audio"] = now
                if "end_of_speech" in current:  # not the tail of the previous reply
                    current.setdefault("first_audio", now)
                    play(current, now, len(item.samples) / OUTPUT_RATE_HZ)
                continue
            kind = item.type
            if kind in ("tool_call", "tool_result") and "end_of_speech" in current:
                current.setdefault(kind, now)
            if kind == "turn_metrics":
                current["stages"] = item.stages_ms
            elif kind == "agent_text" and item.final:
                current["text"], current["text_final"] = item.text, now
                reply_done.set()
            elif kind == "input_ended":
                return

    receiver = asyncio.create_task(receive())
    silence = np.zeros(FRAME, np.int16)

    clock = {"t0": time.perf_counter(), "frames": 0, "last_audio": 0.0}  # one real-time clock per session

    async def send(audio: np.ndarray, mark_end_at: int | None = None) -> None:
        for pos in range(0, len(audio), FRAME):
            due = clock["t0"] + clock["frames"] * 0.02
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            clock["frames"] += 1
            await client.send_audio(audio[pos:pos + FRAME])
            if mark_end_at is not None and pos <= mark_end_at < pos + FRAME:
                current["end_of_speech"] = time.perf_counter()

    await send(np.zeros(RATE_HZ // 2, np.int16))
    for audio in questions:
        current = {}
        reply_done.clear()
        await send(audio, mark_end_at=last_speech_sample(audio))
        deadline = time.perf_counter() + TURN_TIMEOUT_S
        while not reply_done.is_set() and time.perf_counter() < deadline:  # the mic stays open (silence)
            await send(silence)
        # let the reply play out (it is paced in real time) so the next question is not a barge-in
        while time.perf_counter() - clock["last_audio"] < 0.5 and time.perf_counter() < deadline:
            await send(silence)
        await send(np.zeros(RATE_HZ, np.int16))
        turns.append(current)
    await client.end_input()
    await asyncio.wait_for(receiver, 120)
    await client.close()
    return turns


def play(turn: dict, now: float, seconds: float) -> None:
    """A client's playback buffer: a frame that arrives after the buffer ran dry is a stall (the
    listener hears a gap in the reply); stalls under 30 ms are network jitter, not counted."""
    dry_at = turn.get("dry_at", now)
    if now - dry_at > 0.03:
        turn["stalls"] = turn.get("stalls", 0) + 1
        turn["stall_ms"] = turn.get("stall_ms", 0.0) + (now - dry_at) * 1000
    turn["dry_at"] = max(dry_at, now) + seconds


def start_server_in(tree: Path | None, profile: str, env: dict[str, str]):
    """`voice serve` from `tree` (a checkout: its own `voice` package comes first on the path), or
    from this checkout (None)."""
    code = tree or ROOT
    if (code / "voice" / "server" / "admission.py").is_file():
        env = {"VOICE_SERVER__ADMISSION__ENABLED": "false", **env}  # a bench's back-to-back sessions are no overload
    if tree is None:
        return start_server(Path("/tmp"), "--profile", profile, env=env)
    import subprocess

    from conftest import READY, ServerProcess

    log_path = Path("/tmp") / f"v2v-server-{time.monotonic_ns()}.log"
    proc = subprocess.Popen([sys.executable, "-m", "voice.cli", "--log-level", "info", "serve", "--port", "0",
                             "--profile", profile], stdout=subprocess.PIPE, stderr=open(log_path, "w"),  # noqa: SIM115
                            text=True, cwd=tree, env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if m := READY.search(line):
            return ServerProcess(proc, m.group(1), log_path)
    raise RuntimeError(f"server in {tree} did not start: {log_path.read_text()[-2000:]}")


def run_side(tree: Path | None, args: argparse.Namespace, env: dict[str, str], audios: list) -> list[dict]:
    server = start_server_in(tree, args.profile, env)
    try:
        turns = []
        for s in range(args.sessions):
            turns += asyncio.run(run_session(server.url, audios[s * args.turns:(s + 1) * args.turns]))
            print(f"{tree or 'this tree'}: session {s + 1}/{args.sessions} done", flush=True)
    finally:
        server.stop()
    return turns


def tool_rows(label: str, turns: list[dict]) -> tuple[list[tuple[str, dict]], dict]:
    tools = [t for t in turns if "tool_call" in t and "first_audio" in t and "end_of_speech" in t]
    first = [(t["first_audio"] - t["end_of_speech"]) * 1000 for t in tools]
    result = [(t["tool_result"] - t["end_of_speech"]) * 1000 for t in tools if "tool_result" in t]
    plain = [(t["first_audio"] - t["end_of_speech"]) * 1000 for t in turns
             if "tool_call" not in t and "first_audio" in t and "end_of_speech" in t]
    data = {"first_audio_ms": summary(first), "tool_result_ms": summary(result), "plain_first_audio_ms": summary(plain),
            "replies": [t.get("text", "") for t in tools]}
    return [(f"{label}: tool turn, speech end -> first audio", data["first_audio_ms"]),
            (f"{label}: tool turn, speech end -> tool result", data["tool_result_ms"]),
            (f"{label}: plain turn, speech end -> first audio", data["plain_first_audio_ms"])], data


def piper_ms(texts: list[str]) -> list[float]:
    """Baseline part: time to synthesize each whole reply with the same Piper voice, in process."""
    from piper import PiperVoice

    from voice.models import model_path

    path = model_path("piper-joe")
    voice = PiperVoice.load(str(path), config_path=f"{path}.json")
    out = []
    for text in texts:
        t = time.perf_counter()
        list(voice.synthesize(text))
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--env", action="append", default=[], metavar="VOICE_X__Y=VALUE",
                    help="a setting for the server, e.g. VOICE_LLM__N_THREADS_SOLO=1 (repeatable)")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    ap.add_argument("--tool-every", type=int, default=0, help="every Nth turn is a weather question (0: none)")
    ap.add_argument("--tree", type=Path, help="run the server from this checkout (default: this working tree)")
    ap.add_argument("--baseline-tree", type=Path, help="A/B: the same turns against a server from this checkout")
    args = ap.parse_args()
    server_env = dict(item.split("=", 1) for item in args.env)
    n = args.sessions * args.turns
    every = args.tool_every
    texts = [TOOL_QUESTIONS[(i // every) % len(TOOL_QUESTIONS)] if every and i % every == every - 1
             else QUESTIONS[i % len(QUESTIONS)] for i in range(n)]
    audios = [speech(t) for t in texts]
    print(f"{len(texts)} turns in {args.sessions} sessions, profile {args.profile}", flush=True)
    turns = run_side(args.tree, args, server_env, audios)
    base_turns = run_side(args.baseline_tree, args, server_env, audios) if args.baseline_tree else []
    done = [t for t in turns if "stages" in t and "first_audio" in t and "end_of_speech" in t]
    stages = {k: [t["stages"][k] for t in done if k in t["stages"]]
              for k in ("final_transcript", "first_llm_token", "first_tts_audio", "first_audio_sent")}
    client_v2v = [(t["first_audio"] - t["end_of_speech"]) * 1000 for t in done]
    synth = piper_ms([t["text"] for t in done])
    baseline = [(t["text_final"] - t["end_of_speech"]) * 1000 + s for t, s in zip(done, synth, strict=True)]
    rows = [(f"server: speech end -> {k}", summary(v)) for k, v in stages.items()]
    rows += [("client: last speech sample -> first reply audio", summary(client_v2v)),
             ("baseline: non-streaming (whole reply, then TTS)", summary(baseline))]
    tool_table, tool_data = tool_rows("this", turns)
    rows += tool_table
    base_data: dict = {}
    if base_turns:
        base_table, base_data = tool_rows("baseline", base_turns)
        rows += base_table
    print_table(f"Voice-to-voice latency ({len(done)} of {len(turns)} turns answered)", rows)
    if base_data:
        print(f"\ntool turns, p50 first audio: this / baseline = "
              f"{tool_data['first_audio_ms']['p50'] / base_data['first_audio_ms']['p50']:.2f}")
    ratio = summary(client_v2v)["p50"] / summary(baseline)["p50"]
    stalls = [t.get("stalls", 0) for t in done]
    stall_ms = sum(t.get("stall_ms", 0.0) for t in done)
    print(f"\nratio p50 streaming / non-streaming baseline = {ratio:.2f}")
    print(f"reply audio stalls (client buffer ran dry > 30 ms): {sum(stalls)} in {len(done)} replies, "
          f"{stall_ms:.0f} ms in all")
    write_results(f"voice_to_voice_{args.profile}{args.tag}", {
        "tool_turns": tool_data, "baseline_tree": str(args.baseline_tree or ""), "tree": str(args.tree or "."),
        "baseline_tool_turns": base_data,
        "ratio_tool_first_audio_p50_vs_baseline": (tool_data["first_audio_ms"]["p50"]
                                                   / base_data["first_audio_ms"]["p50"]) if base_data else None,
        "settings": {"profile": args.profile, "sessions": args.sessions, "turns_per_session": args.turns,
                     "asr": "whisper-tiny.en", "llm": "qwen2.5-coder-0.5b Q4_K_M", "tts": "piper-joe",
                     "min_silence_ms": 500, "server_env": server_env},
        "turns": len(turns), "answered": len(done),
        "server_stages_ms": {k: summary(v) for k, v in stages.items()},
        "client_voice_to_voice_ms": summary(client_v2v),
        "baseline_non_streaming_ms": summary(baseline),
        "ratio_streaming_vs_baseline_p50": ratio,
        "reply_audio_stalls": {"count": sum(stalls), "total_ms": round(stall_ms, 1),
                               "replies_with_stalls": sum(1 for n in stalls if n)},
        "per_turn": [{"reply": t.get("text", ""), "client_ms": round(c, 1), "server_stages_ms": t["stages"],
                      "stalls": t.get("stalls", 0)}
                     for t, c in zip(done, client_v2v, strict=True)],
    })


if __name__ == "__main__":
    main()
