"""The live-microphone path of `voice mic` (sounddevice/PortAudio), with a PulseAudio virtual mic.

This machine has no sound card: PulseAudio runs with a null sink whose monitor is remapped as a
microphone; `paplay` "speaks" a WAV into it in real time (recipe in shared/notes/peers.md §3).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from speech_data import librivox_clips, wer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("pulseaudio") is None or shutil.which("paplay") is None,
                       reason="needs Debian packages pulseaudio + pulseaudio-utils (scripts/install.sh --test)"),
]


@pytest.fixture
def virtual_mic(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "run"), "HOME": str(tmp_path),
           "PULSE_SOURCE": "fakemic", "PULSE_SINK": "spk"}  # the reply plays into "spk", never back into the mic
    (tmp_path / "run").mkdir()
    subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n", "--use-pid-file=yes",
                    "--load=module-native-protocol-unix",
                    "--load=module-null-sink sink_name=micbus rate=16000 channels=1",
                    "--load=module-null-sink sink_name=spk rate=16000 channels=1",
                    "--load=module-remap-source master=micbus.monitor source_name=fakemic",
                    f"--log-target=file:{tmp_path}/pa.log"], env=env, check=True, timeout=30)
    for _ in range(50):
        if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    yield env
    subprocess.run(["pulseaudio", "--kill"], env=env, timeout=30)


def test_live_microphone_through_sounddevice(server, virtual_mic):
    clip, ref = librivox_clips()[0]
    mic = subprocess.Popen([sys.executable, "-m", "voice.cli", "mic", "--url", server.url, "--device", "pulse",
                            "--rate", "16000", "--seconds", "11", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=virtual_mic, cwd=ROOT)
    time.sleep(1.5)  # let the capture stream open before the "speaker" starts
    subprocess.run(["paplay", "-d", "micbus", str(clip)], env=virtual_mic, check=True, timeout=30)
    out, err = mic.communicate(timeout=60)
    assert mic.returncode == 0, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    finals = " ".join(e["text"] for e in events if e["type"] == "transcript_final")
    assert wer(ref, finals) <= 0.15, finals
