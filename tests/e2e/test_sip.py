"""The SIP gateway with real peers over loopback: baresip, sipp and kamailio, a real voice server.

Every call here is real: SIP over UDP, G.711 RTP both ways, a protocol session per call. A call
costs seconds, so the module keeps them few. Tests skip, naming the Debian package, only when
the peer is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, start_server
from piper_speech import synthesize
from speech_data import wer

pytestmark = pytest.mark.e2e

SIP_DIR = ROOT / "tests" / "sip"
QUESTION = "How many days are there in a week?"
# admission off: calls here arrive faster than its measuring allows, and the gateway is what is tested
SERVER_ENV = {"VOICE_LLM__TEMPERATURE": "0", "VOICE_LLM__MAX_TOKENS": "40", "VOICE_SERVER__ADMISSION__ENABLED": "false"}
READY = re.compile(r"voice sip ready on udp:(\S+):(\d+)")


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} not installed: apt-get install {package}")
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """A `voice sip` process; `events()` reads its JSON-lines event log."""

    def __init__(self, folder: Path, server_url: str, rtp_ports: str, *extra: str):
        self.port = free_udp_port()
        self.event_log = folder / f"events-{self.port}.jsonl"
        self.log_path = folder / f"gateway-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voice.cli", "--log-level", "info", "sip", "--listen", f"127.0.0.1:{self.port}",
             "--server", server_url, "--rtp-ports", rtp_ports, "--event-log", str(self.event_log), *extra],
            stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert READY.search(line), f"gateway did not start: {line}\n{self.log()}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, kind: str | None = None) -> list[dict]:
        if not self.event_log.exists():
            return []
        rows = [json.loads(line) for line in self.event_log.read_text().splitlines() if line.strip()]
        return [r for r in rows if kind is None or r["type"] == kind]

    def wait_for(self, check: Callable[[], object], timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\nevents: {self.events()}\nlog:\n{self.log()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def voice_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("sip-server"), env=SERVER_ENV)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def question(tmp_path_factory) -> dict[str, Path]:
    """The spoken question at 8 kHz: a WAV (baresip) and raw μ-law (sipp's rtp_stream)."""
    need("sox", "sox")
    folder = tmp_path_factory.mktemp("question")
    audio, rate = synthesize(QUESTION)
    raw = folder / "question_raw.wav"
    sf.write(str(raw), audio, rate, subtype="PCM_16")
    wav8k = folder / "question8k.wav"
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(wav8k),
                    "rate", "-v"], check=True)  # sox's own soxr-based "very high quality" resampler
    ulaw = folder / "question.ulaw"
    subprocess.run(["sox", str(wav8k), "-e", "u-law", "-t", "raw", str(ulaw)], check=True)
    return {"wav": wav8k, "ulaw": ulaw}


@pytest.fixture(scope="module")
def whisper():
    from faster_whisper import WhisperModel

    from voice.models import model_path

    return WhisperModel(str(model_path("whisper-base")), device="cpu", compute_type="int8", cpu_threads=1)


def spoken(text: str) -> str:
    """The words as the TTS reads them: the small LLM sometimes glues digits to words ("are7")."""
    return re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", " ", text)


def transcribe(model, path: Path) -> str:
    from voice.codecs.resample import resample

    audio, rate = sf.read(str(path), dtype="float32")
    segments, _ = model.transcribe(resample(audio, rate, 16000), language="en", beam_size=1,
                                   condition_on_previous_text=False)
    return " ".join(s.text.strip() for s in segments)


# ---------------------------------------------------------------------- baresip


def baresip_config(folder: Path, audio: Path, rtp_ports: str) -> tuple[Path, Path]:
    """A baresip config dir (peers.md §1): loopback only, WAV in, every call dumped to WAV."""
    conf, dumps = folder / "baresip", folder / "dumps"
    conf.mkdir()
    dumps.mkdir()
    (conf / "config").write_text("\n".join([
        "poll_method epoll", f"sip_listen 127.0.0.1:{free_udp_port()}", "net_interface 127.0.0.1",
        "audio_player aubridge,nullsink", f"audio_source aufile,{audio}", "audio_alert aubridge,nullalert",
        "ausrc_srate 8000", "auplay_srate 8000", "ausrc_channels 1", "auplay_channels 1", f"rtp_ports {rtp_ports}",
        "rtp_stats yes", "module_path /usr/lib/baresip/modules", "module g711.so", "module aufile.so",
        "module aubridge.so", "module sndfile.so", "module_tmp account.so", "module_app menu.so",
        f"snd_path {dumps}", ""]))
    (conf / "accounts").write_text("<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU\n")
    return conf, dumps


def padded(src: Path, dst: Path, seconds: float) -> Path:
    subprocess.run(["sox", str(src), str(dst), "pad", "0.3", str(seconds)], check=True)
    return dst


def test_baresip_caller_hears_a_spoken_reply_that_matches_the_agent_text(voice_server, question, whisper, tmp_path):
    need("baresip", "baresip-core")
    gateway = Gateway(tmp_path, voice_server.url, "40000-40019")
    # padded so baresip (which hangs up at the end of its file) stays on the line for the reply
    conf, dumps = baresip_config(tmp_path, padded(question["wav"], tmp_path / "ask.wav", 60), "10000-10019")
    phone = subprocess.Popen(["baresip", "-f", str(conf), "-e", f"/dial sip:agent@127.0.0.1:{gateway.port}",
                              "-t", "90"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        gateway.wait_for(lambda: gateway.events("agent_audio_sent"), 75, "the agent's reply to be sent")
        time.sleep(1.0)  # the phone's own jitter buffer still holds the last packets
    finally:
        phone.send_signal(signal.SIGTERM)  # baresip hangs up (BYE) and closes its WAV dumps
        out = phone.communicate(timeout=20)[0].decode(errors="replace")
    ended = gateway.wait_for(lambda: gateway.events("call_ended"), 10, "the BYE to end the call")[0]
    gateway.stop()
    heard_by_server = " ".join(e["text"] for e in gateway.events("transcript_final"))
    agent_text = " ".join(e["text"] for e in gateway.events("agent_text"))
    reply_wav = next(dumps.glob("*-dec.wav"))
    heard_by_phone = transcribe(whisper, reply_wav)
    started = gateway.events("call_started")[0]
    print(f"\nserver heard: {heard_by_server!r}\nagent said: {agent_text!r}\nphone heard: {heard_by_phone!r}\n"
          f"setup {started['setup_ms']} ms, call {ended}\nbaresip: {out[-300:]}")
    assert wer(QUESTION, heard_by_server) <= 0.35, heard_by_server
    assert agent_text.strip()
    assert wer(spoken(agent_text), heard_by_phone) <= 0.35, (agent_text, heard_by_phone)
    assert ended["reason"] == "bye" and ended["lost_frames"] == 0 and ended["rtp_in"] > 100
    assert started["codec"] == "PCMU" and started["setup_ms"] < 2000


# ---------------------------------------------------------------------- sipp


def sipp(folder: Path, scenario: str, port: int, *args: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
    """Run one sipp scenario from tests/sip in `folder` (it drops its logs in the cwd)."""
    folder.mkdir(exist_ok=True)
    shutil.copy(SIP_DIR / scenario, folder / scenario)  # sipp looks for pcap/ next to the scenario
    pcap = folder / "pcap"
    if not pcap.exists():
        pcap.symlink_to("/usr/share/sip-tester")
    cmd = ["sipp", "-sf", scenario, "-s", "agent", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p",
           str(free_udp_port()), "-mi", "127.0.0.1", "-nostdin", "-trace_err", "-timeout", f"{int(timeout_s)}s", *args]
    return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout_s + 30)


def sipp_counts(result: subprocess.CompletedProcess) -> tuple[int, int]:
    ok = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", result.stdout)
    failed = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", result.stdout)
    assert ok and failed, result.stdout[-2000:] + result.stderr[-2000:]
    return int(ok.group(1)), int(failed.group(1))


def sipp_errors(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in folder.glob("*_errors.log"))


@pytest.fixture(scope="module")
def sipp_gateway(voice_server, tmp_path_factory):
    need("sipp", "sip-tester")
    gateway = Gateway(tmp_path_factory.mktemp("sipp-gw"), voice_server.url, "40100-40139", "--ring-ms", "300")
    yield gateway
    gateway.stop()


def test_sipp_call_streams_speech_and_dtmf_and_hangs_up_cleanly(sipp_gateway, question, tmp_path):
    work = tmp_path / "call"
    work.mkdir()
    shutil.copy(question["ulaw"], work / "question.ulaw")
    before = len(sipp_gateway.events("call_ended"))
    result = sipp(work, "uac_call.xml", sipp_gateway.port, "-m", "1", "-d", "4000", "-mp", str(free_udp_port()))
    assert sipp_counts(result) == (1, 0), sipp_errors(work)
    ended = sipp_gateway.wait_for(lambda: sipp_gateway.events("call_ended")[before:], 10, "call_ended")[0]
    call = ended["call_id"]
    finals = [e["text"] for e in sipp_gateway.events("transcript_final") if e["call_id"] == call]
    print(f"\nsipp call: {ended}\nserver heard: {finals}")
    assert ended["reason"] == "bye" and ended["dtmf"] == "1"
    speech_packets = question["ulaw"].stat().st_size // 160
    assert ended["rtp_in"] >= speech_packets + 3  # every speech packet and the digit's event packets
    assert ended["rtp_out"] >= 200 and ended["lost_frames"] == 0  # ~5 s paced out
    assert finals and wer(QUESTION, finals[0]) <= 0.35


def test_when_the_agent_ends_the_call_the_caller_gets_a_bye(sipp_gateway, tmp_path):
    """The caller presses "#" (goodbye); the agent says goodbye, ends the call, the gateway sends BYE."""
    before = len(sipp_gateway.events("call_ended"))
    result = sipp(tmp_path / "hangup", "uac_agent_hangs_up.xml", sipp_gateway.port, "-m", "1",
                  "-mp", str(free_udp_port()))
    assert sipp_counts(result) == (1, 0), sipp_errors(tmp_path / "hangup")
    ended = sipp_gateway.wait_for(lambda: sipp_gateway.events("call_ended")[before:], 10, "call_ended")[0]
    assert ended["reason"] != "bye", ended  # not the caller's BYE: the server ended it
    assert ended["rtp_out"] >= 50  # the goodbye was played before the BYE


def test_six_concurrent_sipp_calls_all_succeed(sipp_gateway, tmp_path):
    work = tmp_path / "load"
    work.mkdir()
    (work / "question.ulaw").write_bytes(bytes([0xFF]) * 8000)  # 1 s of μ-law silence: no LLM turns
    before = len(sipp_gateway.events("call_ended"))
    result = sipp(work, "uac_call.xml", sipp_gateway.port, "-m", "6", "-l", "6", "-r", "6", "-d", "3000",
                  "-mp", str(free_udp_port()))
    assert sipp_counts(result) == (6, 0), sipp_errors(work)
    ended = sipp_gateway.wait_for(lambda: len(sipp_gateway.events("call_ended")[before:]) >= 6 and
                                  sipp_gateway.events("call_ended")[before:], 15, "six call_ended")
    calls = {e["call_id"] for e in ended}
    started = [e for e in sipp_gateway.events("call_started") if e["call_id"] in calls]
    assert len(calls) == 6 and len(started) == 6
    assert max(e["t"] for e in started) < min(e["t"] for e in ended)  # all six were up at once
    assert all(e["reason"] == "bye" and e["rtp_in"] >= 50 and e["rtp_out"] >= 150 for e in ended), ended
    print(f"\nsetup ms: {[e['setup_ms'] for e in started]}; skipped pacing slots: "
          f"{[e['pacer_skipped'] for e in ended]}")


def test_cancel_while_ringing_gets_200_and_487_and_opens_no_session(sipp_gateway, tmp_path):
    work = tmp_path / "cancel"
    before = len(sipp_gateway.events("call_started"))
    result = sipp(work, "uac_cancel.xml", sipp_gateway.port, "-m", "1", "-mp", str(free_udp_port()))
    assert sipp_counts(result) == (1, 0), sipp_errors(work)
    time.sleep(0.5)
    assert len(sipp_gateway.events("call_started")) == before


def test_malformed_requests_get_400_405_501_and_options_still_works(sipp_gateway, tmp_path):
    work = tmp_path / "malformed"
    result = sipp(work, "malformed.xml", sipp_gateway.port, "-m", "1")
    assert sipp_counts(result) == (1, 0), sipp_errors(work)
    assert sipp_gateway.proc.poll() is None and "Traceback" not in sipp_gateway.log()


# ---------------------------------------------------------------------- kamailio


@pytest.fixture
def kamailio(tmp_path):
    binary = need("kamailio", "kamailio")
    port = free_udp_port()
    folder = tmp_path / "kamailio"
    folder.mkdir()
    config = folder / "kamailio.cfg"
    config.write_text((SIP_DIR / "kamailio.cfg").read_text().replace("__PROXY_PORT__", str(port))
                      .replace("__PASSWORD__", "s3cret"))
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]
    log_path, pid_path = folder / "kamailio.log", folder / "kamailio.pid"
    with open(log_path, "w") as log:
        subprocess.run([binary, "-f", str(config), "-P", str(pid_path), "-w", str(folder), "-m", "32", "-M", "8",
                        "-E"], stdout=log, stderr=log, check=True, timeout=20)  # daemonizes
    yield port, log_path
    if pid_path.exists():
        os.kill(int(pid_path.read_text().strip()), signal.SIGTERM)


def proxy_saw(log_path: Path, pattern: str) -> list[str]:
    return re.findall(pattern, log_path.read_text(errors="replace"))


def test_through_kamailio_register_with_digest_and_record_route_is_honoured(voice_server, question, kamailio,
                                                                             tmp_path):
    need("baresip", "baresip-core")
    need("sipp", "sip-tester")
    proxy_port, proxy_log = kamailio
    gateway = Gateway(tmp_path, voice_server.url, "40200-40219", "--register", f"sip:agent@127.0.0.1:{proxy_port}",
                      "--password", "s3cret")
    try:
        gateway.wait_for(lambda: "registered" in gateway.log(), 15, "registration")
        assert proxy_saw(proxy_log, r"kam: challenge REGISTER") and proxy_saw(proxy_log, r"REGISTER authenticated")
        # 1) baresip calls the AOR at the proxy; it hangs up at the end of its (short) file
        conf, _ = baresip_config(tmp_path, padded(question["wav"], tmp_path / "short.wav", 1.0), "10100-10119")
        subprocess.run(["baresip", "-f", str(conf), "-e", f"/dial sip:agent@127.0.0.1:{proxy_port}", "-t", "20"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=40)
        ended = gateway.wait_for(lambda: gateway.events("call_ended"), 10, "the first call to end")[0]
        assert ended["reason"] == "bye" and ended["rtp_in"] > 50
        gw = f"sip:agent@127.0.0.1:{gateway.port}"
        assert proxy_saw(proxy_log, rf"kam: ACK {re.escape(gw)}\S* from"), proxy_log.read_text()[-2000:]
        assert proxy_saw(proxy_log, rf"kam: BYE {re.escape(gw)}\S* from"), proxy_log.read_text()[-2000:]
        # 2) sipp calls through the proxy and waits; stopping the gateway sends BYE along the route set
        sipp_proc = subprocess.Popen(
            ["sipp", "-sf", str(SIP_DIR / "uac_wait_bye.xml"), "-s", "agent", f"127.0.0.1:{proxy_port}", "-i",
             "127.0.0.1", "-p", str(free_udp_port()), "-mi", "127.0.0.1", "-mp", str(free_udp_port()), "-m", "1",
             "-nostdin", "-timeout", "40s"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        gateway.wait_for(lambda: len(gateway.events("call_started")) >= 2, 15, "the sipp call")
        time.sleep(0.5)
    finally:
        gateway.stop()
    out, err = sipp_proc.communicate(timeout=40)
    assert sipp_counts(subprocess.CompletedProcess([], sipp_proc.returncode, out, err)) == (1, 0), err
    assert proxy_saw(proxy_log, rf"kam: BYE sip:sipp@\S+ from 127\.0\.0\.1:{gateway.port}"), \
        proxy_log.read_text()[-2000:]
    assert proxy_saw(proxy_log, r"REGISTER authenticated for \S+ expires 0")  # unregistered on the way out
    assert np.all([e["reason"] in ("bye", "gateway stopping") for e in gateway.events("call_ended")])


# ---------------------------------------------------------------------- issue 13: hostile peers over raw UDP


class RawPhone:
    """A UDP socket that sends hand-written SIP and reads what comes back."""

    def __init__(self, gateway_port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.gateway = ("127.0.0.1", gateway_port)

    def send(self, text: str) -> None:
        head, _, body = text.partition("\n\n")
        self.sock.sendto((head.replace("\n", "\r\n") + "\r\n\r\n" + body).encode(), self.gateway)

    def replies(self, timeout_s: float, until=lambda seen: False) -> list:
        from voice.gateways.sip.message import parse_message

        seen, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until(seen):
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                seen.append(parse_message(self.sock.recv(65535)))
            except TimeoutError:
                break
        return seen

    def close(self) -> None:
        self.sock.close()


def options(port: int, n: int, sent_by: str | None = None) -> str:
    sent_by = sent_by or f"127.0.0.1:{port}"
    return (f"OPTIONS sip:agent@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP {sent_by};branch=z9hG4bKo{n}\n"
            f"From: <sip:raw@127.0.0.1>;tag=r{n}\nTo: <sip:agent@127.0.0.1>\nCall-ID: opt-{n}\nCSeq: 1 OPTIONS\n"
            f"Max-Forwards: 70\nContent-Length: 0\n\n")


def raw_invite(port: int, n: int) -> str:
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {20000 + 2 * n} RTP/AVP 0\r\n")
    return (f"INVITE sip:agent@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKi{n}\n"
            f"From: <sip:raw@127.0.0.1>;tag=i{n}\nTo: <sip:agent@127.0.0.1>\nCall-ID: raw-{n}-{port}\n"
            f"CSeq: 1 INVITE\nContact: <sip:raw@127.0.0.1:{port}>\nMax-Forwards: 70\n"
            f"Content-Type: application/sdp\nContent-Length: {len(sdp)}\n\n{sdp}")


def finals_by_call(replies: list) -> dict[str, object]:
    out: dict[str, object] = {}
    for m in replies:
        if m.status and m.status >= 200 and m.cseq[1] == "INVITE":
            out.setdefault(m.call_id, m)
    return out


def healthz(srv) -> dict:
    import urllib.request

    return json.load(urllib.request.urlopen(f"{srv.http}/healthz"))


def server_sessions(srv) -> int:
    return healthz(srv)["sessions"]


def test_a_via_port_above_65535_does_not_silence_the_gateway(voice_server, tmp_path):
    # issue 13 item 1: one such datagram made sendto raise, asyncio closed the SIP socket
    gateway = Gateway(tmp_path, voice_server.url, "40300-40301")
    phone = RawPhone(gateway.port)
    try:
        phone.send(options(phone.port, 1, sent_by="10.7.7.7:70000"))  # no rport
        bad = phone.replies(3, until=lambda seen: seen)
        assert bad and bad[0].status == 400 and "port" in bad[0].reason  # answered at the source
        phone.send(options(phone.port, 2))
        ok = phone.replies(3, until=lambda seen: seen)
        assert ok and ok[0].status == 200
    finally:
        phone.close()
        gateway.stop()
    assert "Traceback" not in gateway.log() and "closed unexpectedly" not in gateway.log()


def test_a_full_server_gets_the_caller_503_with_retry_after_and_the_rtp_port_back(voice_server, tmp_path):
    # issue 13 item 5: the gateway answered 500 and leaked the call's RTP port
    import contextlib

    from wire import frame, hello_payload, raw_connect, recv_frame

    from voice.protocol import MessageType

    gateway = Gateway(tmp_path, voice_server.url, "40310-40311")  # one RTP port
    phone = RawPhone(gateway.port)
    try:
        with contextlib.ExitStack() as sessions:
            for _ in range(healthz(voice_server)["max_sessions"]):
                ws = sessions.enter_context(raw_connect(voice_server.url))
                ws.send(frame(MessageType.HELLO, hello_payload()))
                if recv_frame(ws).type != MessageType.READY:
                    break  # admission control may refuse before max_sessions: full either way
            phone.send(raw_invite(phone.port, 1))
            refused = finals_by_call(phone.replies(10, until=finals_by_call))[f"raw-1-{phone.port}"]
            assert refused.status == 503 and refused.get("Retry-After") and "SERVER_BUSY" in refused.reason
        gateway.wait_for(lambda: server_sessions(voice_server) == 0, 15, "the sessions to close")
        phone.send(raw_invite(phone.port, 2))  # needs the one RTP port: it was released
        ok = finals_by_call(phone.replies(15, until=finals_by_call))[f"raw-2-{phone.port}"]
        assert ok.status == 200, ok.reason
    finally:
        phone.close()
        gateway.stop()
    assert "Traceback" not in gateway.log()


def test_twenty_invites_that_never_ack_hold_few_sessions_and_release_them_at_timer_h(voice_server, tmp_path):
    # issue 13 item 6: 20 unauthenticated INVITEs without ACK held all 16 sessions for ~32 s
    gateway = Gateway(tmp_path, voice_server.url, "40320-40399", "--t1-ms", "50", "--max-unconfirmed-calls", "4")
    phone = RawPhone(gateway.port)
    try:
        for n in range(20):
            phone.send(raw_invite(phone.port, n))
        finals = finals_by_call(phone.replies(30, until=lambda seen: len(finals_by_call(seen)) >= 20))
        statuses = sorted(m.status for m in finals.values())
        assert len(statuses) == 20 and statuses.count(200) <= 4 and statuses.count(503) >= 16, statuses
        assert all(m.get("Retry-After") for m in finals.values() if m.status == 503)
        assert server_sessions(voice_server) <= 4
        answered = statuses.count(200)
        hung_up = lambda seen: {m.call_id for m in seen if m.method == "BYE"}  # noqa: E731 - BYEs are retransmitted
        byes = phone.replies(64 * 0.05 + 5, until=lambda seen: len(hung_up(seen)) >= answered)
        assert len(hung_up(byes)) == answered  # each answered call hung up at 64*T1 (3.2 s)
        gateway.wait_for(lambda: server_sessions(voice_server) == 0, 10, "the server sessions to be released")
    finally:
        phone.close()
        gateway.stop()
    assert "Traceback" not in gateway.log()
