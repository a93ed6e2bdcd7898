"""Call recordings (voice/pipeline/recording.py): one stereo file per call on one timeline, a JSON
of events, atomic writes, bounded memory, retention, and nothing at all when recording is off."""

from __future__ import annotations

import json
import os
import re
import time

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from voice.pipeline import recording
from voice.pipeline.recording import RATE_HZ, CallRecorder, RecordingSettings, sweep_old_recordings

FRAME_S = 0.02
FRAME = int(FRAME_S * RATE_HZ)


def tone(hz: float, seconds: float, rate_hz: int = RATE_HZ, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def settings(tmp_path, **over) -> RecordingSettings:
    return RecordingSettings(enabled=True, folder=tmp_path / "rec", **{"format": "wav", **over})


def feed_user(rec: CallRecorder, audio: np.ndarray, t0: float, jitter_s: float = 0.0, seed: int = 0) -> None:
    """The input stream in 20 ms chunks; chunk i arrives when its last sample was spoken, plus network delay."""
    rng = np.random.default_rng(seed)
    for i in range(0, len(audio), FRAME):
        end_s = (i + FRAME) / RATE_HZ
        rec.user_audio(audio[i:i + FRAME], 1000 * i / RATE_HZ, arrived_at=t0 + end_s + rng.uniform(0, jitter_s))


def feed_agent(rec: CallRecorder, audio: np.ndarray, rate_hz: int, at: float) -> None:
    """A reply paced in real time: 20 ms frames, each leaving for the client at its time."""
    step = int(FRAME_S * rate_hz)
    for n, i in enumerate(range(0, len(audio), step)):
        rec.agent_audio(audio[i:i + step], rate_hz, at=at + n * FRAME_S)


def onset(channel: np.ndarray, threshold: float = 0.05) -> int:
    return int(np.argmax(np.abs(channel) > threshold))


def dominant_hz(channel: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(channel))
    return float(np.fft.rfftfreq(len(channel), 1 / RATE_HZ)[np.argmax(spectrum)])


async def test_nothing_is_written_when_recording_is_off(tmp_path):
    off = RecordingSettings(folder=tmp_path / "rec")
    assert CallRecorder.open(off, "s1") is None
    assert CallRecorder.open(RecordingSettings(), "s1") is None
    await recording.retention_sweeps(off)  # returns at once: no sweep task when off
    assert not (tmp_path / "rec").exists()


def test_enabled_without_a_folder_is_a_config_error():
    with pytest.raises(ValidationError, match="folder"):
        RecordingSettings(enabled=True)


@pytest.mark.parametrize("fmt", ["wav", "ogg"])
async def test_stereo_file_has_the_user_left_and_the_agent_right(tmp_path, fmt):
    rec = CallRecorder.open(settings(tmp_path, format=fmt), "s1")
    t0 = time.monotonic()
    feed_user(rec, tone(440, 2.0), t0)
    feed_agent(rec, tone(1000, 0.8, 48000), 48000, at=t0 + 1.0)
    path = await rec.close()
    assert path.suffix == f".{fmt}"
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == RATE_HZ and audio.shape[1] == 2
    assert len(audio) == pytest.approx(2.0 * RATE_HZ, abs=FRAME)
    user, agent = audio[:, 0], audio[:, 1]
    assert dominant_hz(user) == pytest.approx(440, abs=5)
    assert dominant_hz(agent[RATE_HZ + 1600:RATE_HZ + 9600]) == pytest.approx(1000, abs=5)
    assert np.abs(agent[: RATE_HZ - 1600]).max() < 0.01, "agent channel has sound before the agent spoke"


async def test_agent_audio_sits_where_the_client_heard_it(tmp_path):
    """The input stream starts 3 s after the session and its chunks arrive up to 60 ms late at
    random; the reply must still land within one 20 ms frame of where the client heard it."""
    rec = CallRecorder.open(settings(tmp_path), "s1")
    t0 = time.monotonic() + 3.0
    feed_user(rec, np.zeros(4 * RATE_HZ, np.float32), t0, jitter_s=0.06)
    feed_agent(rec, tone(300, 0.5, 24000), 24000, at=t0 + 1.5)
    feed_agent(rec, tone(300, 0.5, 24000), 24000, at=t0 + 3.0)  # a second reply after a pause
    audio, _ = sf.read(str(await rec.close()), dtype="float32")
    agent = audio[:, 1]
    assert abs(onset(agent) - 1.5 * RATE_HZ) <= FRAME
    assert abs(onset(agent[int(2.5 * RATE_HZ):]) + 2.5 * RATE_HZ - 3.0 * RATE_HZ) <= FRAME


async def test_a_reply_plays_back_to_back_however_its_frames_were_sent(tmp_path):
    """The pacer sends a reply's first frames at once, and a busy loop sends later ones up to 30 ms
    late: the client's jitter buffer plays them one after another all the same, so the recording
    must have no holes or overlaps either."""
    rec = CallRecorder.open(settings(tmp_path), "s1")
    t0 = time.monotonic()
    feed_user(rec, np.zeros(2 * RATE_HZ, np.float32), t0)
    reply = tone(500, 0.6, 16000)
    late_s = np.random.default_rng(1).uniform(0, 0.03, len(reply) // FRAME)
    for n, i in enumerate(range(0, len(reply), FRAME)):
        if n < 3:
            sent = t0 + 0.5                        # the pacer's lead: 3 frames at once
        elif n < 15:
            sent = t0 + 0.5 + (n - 3) * FRAME_S    # real time, 60 ms ahead of playback
        else:
            sent = t0 + 0.5 + n * FRAME_S + late_s[n]  # lead lost: up to 30 ms behind playback
        rec.agent_audio(reply[i:i + FRAME], 16000, at=sent)
    audio, _ = sf.read(str(await rec.close()), dtype="float32")
    agent = audio[:, 1]
    start = onset(agent)
    sounding = np.abs(agent).reshape(-1, 80).max(axis=1) > 0.05  # 5 ms windows
    assert abs(start - 0.5 * RATE_HZ) <= FRAME
    assert sounding.sum() * 80 == pytest.approx(len(reply), abs=160), "holes or overlaps in the reply"
    assert sounding[start // 80 + 1:(start + len(reply)) // 80 - 1].all()


async def test_json_holds_the_events_on_the_call_timeline(tmp_path):
    rec = CallRecorder.open(settings(tmp_path), "s1")
    t0 = time.monotonic()
    feed_user(rec, np.zeros(RATE_HZ, np.float32), t0)
    rec.event("transcript_final", {"text": "book a table"}, at=t0 + 0.5)
    rec.event("tool_call", {"name": "book", "arguments": {"people": 2}}, at=t0 + 0.7)
    await rec.close()
    meta = json.loads((tmp_path / "rec" / f"{rec.name}.json").read_text())
    assert meta["audio"] == f"{rec.name}.wav" and meta["channels"] == ["user", "agent"]
    assert [e["kind"] for e in meta["events"]] == ["transcript_final", "tool_call"]
    assert meta["events"][0]["t_ms"] == pytest.approx(500, abs=1)
    assert meta["events"][1]["data"]["arguments"] == {"people": 2}
    assert meta["duration_s"] == pytest.approx(1.0)


async def test_files_appear_whole_or_not_at_all(tmp_path, monkeypatch):
    rec = CallRecorder.open(settings(tmp_path), "s1")
    feed_user(rec, tone(440, 1.0), time.monotonic())
    seen_before_rename = []
    real_replace = os.replace

    def replace(src, dst):
        seen_before_rename.append((os.path.basename(dst), sorted(os.listdir(os.path.dirname(dst)))))
        real_replace(src, dst)

    monkeypatch.setattr(recording.os, "replace", replace)
    await rec.close()
    assert [name for name, _ in seen_before_rename] == [f"{rec.name}.wav", f"{rec.name}.json"]
    for name, listing in seen_before_rename:
        assert name not in listing and f".{name}.tmp" in listing
    assert sorted(os.listdir(tmp_path / "rec")) == [f"{rec.name}.json", f"{rec.name}.wav"]


async def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    rec = CallRecorder.open(settings(tmp_path), "s1")
    feed_user(rec, tone(440, 1.0), time.monotonic())

    def half_then_disk_full(self, path, frames):
        path.write_bytes(b"RIFF half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(CallRecorder, "_write_stereo", half_then_disk_full)
    assert await rec.close() is None
    assert os.listdir(tmp_path / "rec") == []


async def test_a_long_call_is_buffered_on_disk_not_in_memory(tmp_path):
    rec = CallRecorder.open(settings(tmp_path, max_call_minutes=0.5), "s1")
    t0 = time.monotonic()
    chunk = tone(440, FRAME_S)
    for i in range(int(40 / FRAME_S)):  # 40 s of input against a 30 s limit
        rec.user_audio(chunk, 1000 * i * FRAME_S, arrived_at=t0 + (i + 1) * FRAME_S)
        assert rec._user._pending_samples <= recording.FLUSH_S * RATE_HZ
    for job in rec._user.jobs:
        job.result(timeout=10)
    assert (tmp_path / "rec" / f".{rec.name}.user.raw").stat().st_size >= 2 * 20 * RATE_HZ
    path = await rec.close()
    assert sf.info(str(path)).duration == pytest.approx(30.0)
    assert json.loads(path.with_suffix(".json").read_text())["truncated"] is True


async def test_file_names_hold_only_the_start_time_and_the_server_session_id(tmp_path):
    rec = CallRecorder.open(settings(tmp_path, format="ogg"), "a1b2c3d4e5f6")
    feed_user(rec, tone(440, 0.5), time.monotonic())
    await rec.close()
    names = sorted(os.listdir(tmp_path / "rec"))
    assert [re.fullmatch(r"call-\d{8}T\d{6}Z-a1b2c3d4e5f6\.(json|ogg)", n) is not None for n in names] == [True, True]
    for bad in ("../../etc/passwd", "a/b", "", "x" * 65, "caf\u00e9", "a b"):
        with pytest.raises(ValueError):
            CallRecorder.open(settings(tmp_path), bad)


def test_retention_sweep_deletes_only_old_recordings(tmp_path):
    now = time.time()
    old = ["call-20250101T000000Z-s1.ogg", "call-20250101T000000Z-s1.json", ".call-20250101T000000Z-s2.user.raw"]
    young = ["call-20260101T000000Z-s3.ogg"]
    foreign = ["notes.txt", "call-old.ogg"]
    for name in old + young + foreign:
        (tmp_path / name).write_bytes(b"x")
    for name in old + foreign:
        os.utime(tmp_path / name, (now - 31 * 86400, now - 31 * 86400))
    os.utime(tmp_path / young[0], (now - 29 * 86400, now - 29 * 86400))
    assert sweep_old_recordings(tmp_path, 30, now=now) == len(old)
    assert sorted(os.listdir(tmp_path)) == sorted(young + foreign)
    assert sweep_old_recordings(tmp_path / "missing", 30) == 0
