"""Fuzz benchmark against live processes: a real `voice serve` and `voice sip` take hostile input
while a neighbour session streams real speech and must still be understood.

- Protocol: `--frames` frames (default 10^5) over many WebSocket connections, `--connections` at
  once: handshakes in and out of order, mutated golden frames (bit flips, truncation, rewritten
  length fields, other type bytes), hostile JSON (deep, huge, lone surrogates, out-of-range
  numbers, wrong types), oversized PINGs, text messages, and connections we kill mid-stream.
- SIP: `--sip` datagrams (default 2,000) of mutated INVITE/OPTIONS/BYE/REGISTER/CANCEL/ACK/INFO and
  RFC 4475-style torture cases, over UDP (bench/fuzz_inputs.py).
- The neighbour: `voice mic` (a real client process) streams LibriVox clips in real time: once on
  the calm server (the baseline), then in one session admitted before the storm and lasting
  through it (the clips repeated); its WER is compared (ratio).
At the end: tracebacks in both processes' logs (must be 0: every bad input is an ERROR code, a SIP
4xx or a clean close), the neighbour's WER, and whether the gateway still answers OPTIONS.

  .venv/bin/python bench/fuzz.py [--frames 100000] [--sip 2000] [--connections 32] [--seed 13]

Prints a table and writes bench/results/fuzz.json. tests/e2e/test_fuzz.py runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from common import write_results  # noqa: E402
from conftest import VOICE, ServerProcess, start_server  # noqa: E402
from fuzz_inputs import FrameFuzzer, SipFuzzer  # noqa: E402
from speech_data import librivox_clips, normalize_text, wer  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidHandshake  # noqa: E402

from voice.gateways.sip.message import SipParseError, parse_message  # noqa: E402
from voice.protocol import MessageType, ProtocolError, decode_error, decode_frame  # noqa: E402

SERVER_ENV = {"VOICE_LLM__MAX_TOKENS": "24", "VOICE_LLM__TEMPERATURE": "0", "VOICE_SERVER__MAX_SESSIONS": "64"}


@dataclass
class Tally:
    """What the fuzz sent and what came back."""

    target: int = 0      # frames to send in all
    frames: int = 0
    session_frames: int = 0  # of those, sent into a session that had answered READY
    connections: int = 0
    killed: int = 0
    errors: Counter = field(default_factory=Counter)      # ERROR codes the server sent
    closes: Counter = field(default_factory=Counter)      # close codes
    sip_sent: int = 0
    sip_answers: Counter = field(default_factory=Counter)  # status codes, and requests the gateway sent
    sip_unparseable: list = field(default_factory=list)    # why, for the first few datagrams we could not read
    started: float = field(default_factory=time.monotonic)


# ---------------------------------------------------------------------- protocol fuzz


async def drain(ws, tally: Tally, ready: asyncio.Event) -> None:
    """Read everything the server sends; count its ERROR codes, note READY."""
    try:
        async for data in ws:
            if isinstance(data, bytes):
                try:
                    frame = decode_frame(data, max_payload_bytes=1 << 22)
                except ProtocolError:
                    continue
                if frame.type == MessageType.ERROR:
                    tally.errors[decode_error(frame.payload)[0]] += 1
                elif frame.type == MessageType.READY:
                    ready.set()
    except ConnectionClosed:
        pass


async def one_connection(url: str, rng: random.Random, tally: Tally, budget: int, gap_s: float) -> None:
    fuzzer = FrameFuzzer(random.Random(rng.getrandbits(64)))
    plan = rng.choices(["session", "no_hello", "kill", "hello_twice"], weights=[80, 8, 8, 4])[0]
    try:
        ws = await connect(url, compression=None, max_size=None, open_timeout=20, close_timeout=2)
    except (OSError, InvalidHandshake, TimeoutError):
        tally.closes["connect failed"] += 1
        return
    tally.connections += 1
    ready = asyncio.Event()
    reader = asyncio.create_task(drain(ws, tally, ready))
    try:
        hello, fmt = fuzzer.hello()
        if plan != "no_hello":
            await ws.send(hello)
            tally.frames += 1
        if plan == "hello_twice":
            await ws.send(hello)
            tally.frames += 1
        kill_at = rng.randrange(budget) if plan == "kill" else -1
        for i in range(budget):
            if tally.frames >= tally.target:
                break
            if i == kill_at:
                ws.transport.abort()  # a peer that vanishes mid-stream
                tally.killed += 1
                return
            await ws.send(fuzzer.next(fmt))
            tally.frames += 1
            tally.session_frames += ready.is_set()
            if gap_s or i % 20 == 0:
                await asyncio.sleep(gap_s)
        await ws.close()
    except ConnectionClosed:
        pass
    finally:
        await asyncio.wait({reader}, timeout=5)
        reader.cancel()
        code = ws.close_code if ws.close_code is not None else "none"
        tally.closes[code] += 1


async def fuzz_protocol(url: str, frames: int, connections: int, rng: random.Random, tally: Tally,
                        min_duration_s: float = 0.0) -> float:
    """Send `frames` frames over `connections` parallel connections, spread over at least
    `min_duration_s` (0: as fast as the server takes them). Returns the seconds it took."""
    gap_s = connections * min_duration_s / frames
    started = time.monotonic()

    async def worker(seed: int) -> None:
        local = random.Random(seed)
        while tally.frames < frames:
            busy_before = tally.closes[4010]
            await one_connection(url, local, tally, min(local.randint(20, 600), frames - tally.frames + 1), gap_s)
            if tally.closes[4010] > busy_before:
                await asyncio.sleep(0.5)  # refused (SERVER_BUSY): back off a little, as a client should

    await asyncio.gather(*(worker(rng.getrandbits(64)) for _ in range(connections)))
    return time.monotonic() - started


# ---------------------------------------------------------------------- SIP fuzz


class SipReceiver(asyncio.DatagramProtocol):
    def __init__(self, tally: Tally):
        self.tally = tally
        self.options_ok = asyncio.Event()

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            msg = parse_message(data)
        except SipParseError as e:
            self.tally.sip_answers["unparseable"] += 1
            if len(self.tally.sip_unparseable) < 5:
                self.tally.sip_unparseable.append(f"{e.reason}: {data[:120]!r}")
            return
        if msg.is_request:
            self.tally.sip_answers[f"{msg.method} from the gateway"] += 1
        else:
            self.tally.sip_answers[msg.status] += 1
            if msg.status == 200 and msg.call_id.startswith("probe-"):
                self.options_ok.set()


async def fuzz_sip(sip_port: int, count: int, rate_per_s: float, rng: random.Random,
                   tally: Tally) -> SipReceiver:
    loop = asyncio.get_running_loop()
    receiver = SipReceiver(tally)
    transport, _ = await loop.create_datagram_endpoint(lambda: receiver, local_addr=("127.0.0.1", 0))
    fuzzer = SipFuzzer(random.Random(rng.getrandbits(64)), transport.get_extra_info("sockname")[1],
                       f"127.0.0.1:{sip_port}")
    receiver.transport = transport
    receiver.fuzzer = fuzzer
    for _ in range(count):
        transport.sendto(fuzzer.message(), ("127.0.0.1", sip_port))
        tally.sip_sent += 1
        await asyncio.sleep(1 / rate_per_s)
    return receiver


async def gateway_answers_options(receiver: SipReceiver, sip_port: int, timeout_s: float = 5) -> bool:
    """A well-formed OPTIONS after the storm must still get its 200."""
    lines = receiver.fuzzer.valid("OPTIONS")
    lines = [(n, f"probe-{v}" if n == "Call-ID" else v) for n, v in lines]
    receiver.transport.sendto(receiver.fuzzer.render(lines), ("127.0.0.1", sip_port))
    try:
        await asyncio.wait_for(receiver.options_ok.wait(), timeout_s)
    except TimeoutError:
        return False
    return True


# ---------------------------------------------------------------------- the neighbour


def speech_track(folder: Path, clips: list[tuple[Path, str]], seconds: float) -> tuple[Path, str]:
    """The clips one after another (1.5 s of silence between them), repeated to last at least
    `seconds`: one WAV for one session, and its reference text."""
    import numpy as np
    import soundfile as sf

    gap = np.zeros(int(1.5 * 16000), np.int16)
    one = [(sf.read(str(path), dtype="int16")[0], text) for path, text in clips]
    pass_s = sum(len(audio) / 16000 + 1.5 for audio, _ in one)
    passes = max(1, int(np.ceil(seconds / pass_s)))
    audio = np.concatenate([part for _ in range(passes) for a, _ in one for part in (a, gap)])
    path = folder / f"neighbour-{passes}x.wav"
    sf.write(str(path), audio, 16000, subtype="PCM_16")
    return path, " ".join(text for _ in range(passes) for _, text in one)


class Neighbour:
    """One `voice mic` session (a real client process) streaming `wav` in real time; `result` is
    its WER against `reference` once it is done. `admitted` is set when its session is up, so a
    storm can wait for it (a server at its limit refuses new sessions, not running ones)."""

    def __init__(self, url: str, wav: Path, reference: str):
        import threading

        self.reference = reference
        self.result: dict | None = None
        self.admitted = threading.Event()
        self.proc = subprocess.Popen(
            [*VOICE, "mic", "--url", url, "--input", str(wav), "--json", "--no-playback", "--codec", "pcm16",
             "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        finals: dict[int, str] = {}  # utterance -> text, in arrival order
        errors = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.admitted.set()  # READY is followed by the agent's first state event
            event = json.loads(line) if line.strip().startswith("{") else {}
            if event.get("type") == "transcript_final":
                finals.pop(event.get("continues"), None)  # a continuation's text covers the earlier one
                if event.get("text"):
                    finals[event["utterance"]] = event["text"]
            elif event.get("type") == "error":
                errors.append(event.get("name"))
        self.proc.wait()
        self.admitted.set()
        heard = " ".join(finals.values())
        self.result = {"wer": wer(self.reference, heard), "words": len(normalize_text(self.reference).split()),
                       "exit_code": self.proc.returncode, "errors": errors, "heard": heard}

    def wait(self, timeout_s: float = 900) -> dict | None:
        self._thread.join(timeout_s)
        return self.result


# ---------------------------------------------------------------------- the processes


class SipGatewayProcess:
    """`voice sip` in front of `server_url`, its log in `folder`."""

    def __init__(self, folder: Path, server_url: str, rtp_ports: str = "41000-41199", t1_ms: int = 100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log_path = folder / f"gateway-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*VOICE, "--log-level", "info", "sip", "--listen", f"127.0.0.1:{self.port}", "--server", server_url,
             "--rtp-ports", rtp_ports, "--t1-ms", str(t1_ms), "--rtp-timeout", "5"],
            stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if "voice sip ready" not in line:
            raise RuntimeError(f"gateway did not start: {line}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def tracebacks(log: str) -> int:
    return log.count("Traceback (most recent call last)")


async def progress(tally: Tally, frames: int, sip: int, done: asyncio.Event) -> None:
    """A progress bar on a terminal; a line every 10 s in a log."""
    tty = sys.stderr.isatty()
    while not done.is_set():
        rate = tally.frames / max(1e-3, time.monotonic() - tally.started)
        bar = "#" * int(30 * min(1, tally.frames / frames))
        line = f"[{bar:30}] frames {tally.frames}/{frames} ({rate:.0f}/s) connections {tally.connections} " \
               f"sip {tally.sip_sent}/{sip}"
        print("\r" + line if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
        await asyncio.sleep(0.5 if tty else 10)
    print(file=sys.stderr)


async def storm(url: str, sip_port: int, frames: int, sip: int, connections: int, seed: int,
                min_duration_s: float) -> tuple[Tally, float, bool]:
    """Protocol and SIP fuzz at once; (tally, protocol seconds, gateway still answers OPTIONS)."""
    rng = random.Random(seed)
    tally = Tally(target=frames)
    done = asyncio.Event()
    bar = asyncio.create_task(progress(tally, frames, sip, done))
    sip_rate = max(20.0, sip / max(1.0, min_duration_s))
    sip_task = asyncio.create_task(fuzz_sip(sip_port, sip, rate_per_s=sip_rate, rng=random.Random(rng.getrandbits(64)),
                                            tally=tally))
    protocol_s = await fuzz_protocol(url, frames, connections, rng, tally, min_duration_s)
    receiver = await sip_task
    done.set()
    await bar
    await asyncio.sleep(1.0)  # late answers
    return tally, protocol_s, await gateway_answers_options(receiver, sip_port)


def run(folder: Path, *, frames: int, sip: int, connections: int, seed: int, clips: int,
        min_duration_s: float = 0.0) -> dict:
    """The whole benchmark; returns the results (also what tests/e2e/test_fuzz.py checks)."""
    data = folder / "data"
    data.mkdir(exist_ok=True)
    server: ServerProcess = start_server(folder, env={**SERVER_ENV, "VOICE_DATA_DIR": str(data)})
    gateway = SipGatewayProcess(folder, server.url)
    speech = librivox_clips()[:clips]
    try:
        baseline = during = None
        if speech:
            wav, reference = speech_track(folder, speech, 0)
            baseline = Neighbour(server.url, wav, reference).wait()
            wav, reference = speech_track(folder, speech, min_duration_s)
            neighbour = Neighbour(server.url, wav, reference)
            neighbour.admitted.wait(60)
        tally, protocol_s, options_ok = asyncio.run(storm(server.url, gateway.port, frames, sip, connections,
                                                          seed, min_duration_s))
        if speech:
            during = neighbour.wait()
    finally:
        gateway.stop()
        server.stop()
    return {
        "seed": seed, "frames_sent": tally.frames, "frames_into_sessions": tally.session_frames,
        "connections": tally.connections, "killed": tally.killed,
        "frames_per_s": round(tally.frames / protocol_s, 1), "protocol_s": round(protocol_s, 1),
        "error_codes": {str(k): v for k, v in tally.errors.most_common()},
        "close_codes": {str(k): v for k, v in tally.closes.most_common()},
        "sip_sent": tally.sip_sent, "sip_answers": {str(k): v for k, v in sorted(tally.sip_answers.items(), key=str)},
        "sip_unparseable_samples": tally.sip_unparseable,
        "server_tracebacks": tracebacks(server.log()), "gateway_tracebacks": tracebacks(gateway.log()),
        "server_crashed_sessions": server.log().count("session crashed"),
        "gateway_answers_options": options_ok,
        "neighbour_baseline": baseline, "neighbour_under_fuzz": during,
        "wer_ratio": round(during["wer"] / baseline["wer"], 2) if baseline and during and baseline["wer"] else None,
    }


def print_table(r: dict) -> None:
    base, during = r["neighbour_baseline"], r["neighbour_under_fuzz"]
    rows = [
        ("protocol frames sent", f"{r['frames_sent']} over {r['connections']} connections "
                                 f"({r['frames_per_s']} frames/s, {r['killed']} killed by us)"),
        ("  of which into running sessions", str(r["frames_into_sessions"])),
        ("ERROR codes received", ", ".join(f"{k}: {v}" for k, v in r["error_codes"].items()) or "-"),
        ("close codes", ", ".join(f"{k}: {v}" for k, v in r["close_codes"].items())),
        ("SIP datagrams sent", str(r["sip_sent"])),
        ("SIP answers", ", ".join(f"{k}: {v}" for k, v in r["sip_answers"].items())),
        ("tracebacks: server / gateway", f"{r['server_tracebacks']} / {r['gateway_tracebacks']}"),
        ("sessions crashed (server)", str(r["server_crashed_sessions"])),
        ("gateway answers OPTIONS after", "yes" if r["gateway_answers_options"] else "NO"),
        ("neighbour WER calm / under fuzz", f"{base['wer']:.3f} / {during['wer']:.3f} (ratio {r['wer_ratio']})"
         if base and during else "no speech data"),
    ]
    print("\nfuzz benchmark")
    for name, value in rows:
        print(f"{name:32} {value}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--sip", type=int, default=2000)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--clips", type=int, default=5, help="LibriVox clips the neighbour streams (each run)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--min-duration", type=float, default=120.0,
                   help="spread the frames over at least this many s, so the neighbour speaks during the storm")
    p.add_argument("--name", default="fuzz", help="results file name under bench/results/")
    args = p.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="voice-fuzz-") as tmp:
        results = run(Path(tmp), frames=args.frames, sip=args.sip, connections=args.connections, seed=args.seed,
                      clips=args.clips, min_duration_s=args.min_duration)
    print_table(results)
    write_results(args.name, results)
    ok = (results["server_tracebacks"] == 0 and results["gateway_tracebacks"] == 0
          and results["gateway_answers_options"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
