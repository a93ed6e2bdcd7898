"""Real speech both ways: the user's turns spoken by the packaged Piper voice (or read from WAV
files), and the agent's reply audio transcribed back by faster-whisper for `check_audio`.

All audio here is 16 kHz mono int16, the rate the runner streams to the server and asks back.
Piper runs with its prosody noise off (as tests/piper_speech.py does): the same text must give the
same audio on every run, or a scenario's ASR outcome changes between runs for no reason.
Model work runs in worker threads (asyncio.to_thread), one model call at a time per model.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np

RATE_HZ = 16000


def _to_16k_int16(audio: np.ndarray, rate_hz: int) -> np.ndarray:
    from voice.codecs.resample import resample

    f = audio.astype(np.float32)
    if audio.dtype == np.int16:
        f /= 32768.0
    if rate_hz != RATE_HZ:
        f = resample(f, rate_hz, RATE_HZ)
    return (np.clip(f, -1.0, 1.0) * 32767).astype(np.int16)


def read_wav(path: Path) -> np.ndarray:
    """A WAV file (any rate, mono or the mean of its channels) as 16 kHz int16."""
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return _to_16k_int16(audio.mean(axis=1), rate)


class UserVoice:
    """Speaks user turns with the packaged Piper voice; each distinct text is synthesized once."""

    def __init__(self, model: str = "piper-joe"):
        self.model = model
        self._voice: Any = None
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _speak(self, text: str) -> np.ndarray:
        with self._lock:
            if text in self._cache:
                return self._cache[text]
            if self._voice is None:
                from piper import PiperVoice

                from voice.models import model_path

                path = model_path(self.model)
                self._voice = PiperVoice.load(str(path), config_path=f"{path}.json")
            from piper import SynthesisConfig

            chunks = list(self._voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
            if not chunks:
                raise ValueError(f"Piper made no audio for {text!r}")
            audio = np.concatenate([c.audio_int16_array for c in chunks])
            self._cache[text] = _to_16k_int16(audio, chunks[0].sample_rate)
            return self._cache[text]

    async def speak(self, text: str) -> np.ndarray:
        return await asyncio.to_thread(self._speak, text)


class ReplyListener:
    """Whisper (a registry name such as whisper-base, or a CTranslate2 folder) on reply audio.

    Base by default, not the server's tiny.en, so the check does not share the ASR's blind spots.
    """

    def __init__(self, model: str = "whisper-base", cpu_threads: int = 1):
        self.model, self.cpu_threads = model, cpu_threads
        self._whisper: Any = None
        self._lock = threading.Lock()

    def _transcribe(self, audio: np.ndarray) -> str:
        with self._lock:
            if self._whisper is None:
                from faster_whisper import WhisperModel

                from voice.models import resolve

                self._whisper = WhisperModel(str(resolve(self.model, "asr")), device="cpu", compute_type="int8",
                                             cpu_threads=self.cpu_threads)
            samples = audio.astype(np.float32) / 32768.0
            segments, _ = self._whisper.transcribe(samples, language="en", beam_size=1,
                                                   condition_on_previous_text=False)
            return " ".join(s.text.strip() for s in segments).strip()

    async def transcribe(self, audio: np.ndarray) -> str:
        return await asyncio.to_thread(self._transcribe, audio)
