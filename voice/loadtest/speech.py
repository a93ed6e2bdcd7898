"""The simulated callers' questions: real speech from the packaged Piper voice, made once and cached.

Piper (the `piper-tts` package and the `piper-joe` voice the server speaks with) reads each
question; the audio is cached as .npy under ~/.cache/voice-agent/loadtest (VOICE_CACHE_DIR), keyed
by the text and the voice file, so a load test starts in a second the second time. Prosody noise is
off so the same text is the same audio in every run (whisper-tiny heard noisy renditions
differently from run to run).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice.codecs.resample import resample

FRAME_MS = 20
QUIET_DB = -35.0  # a frame this far under the loudest one is not speech (last_speech_sample)

#: Everyday questions a caller might ask; a few offer the agent's tools (weather, reminders).
QUESTIONS = (
    "What is the capital of France?",
    "How many days are there in a week?",
    "What color is the sky on a clear day?",
    "Can you suggest a name for a black cat?",
    "What is two plus three?",
    "Which ocean is the largest?",
    "How do I boil an egg?",
    "What should I wear when it rains?",
    "Tell me a fun fact about bees.",
    "What is the opposite of hot?",
    "How many legs does a spider have?",
    "What do you call a baby dog?",
    "What is the weather like in Paris today?",
    "Please remind me to water the plants at six.",
    "Why do leaves change color in autumn?",
    "How long should I sleep every night?",
)


@dataclass(frozen=True)
class Question:
    """One spoken question: int16 mono audio at `rate_hz` and where its speech ends."""

    text: str
    audio: np.ndarray
    rate_hz: int
    speech_end: int  # samples: index just past the last frame of speech

    def at_rate(self, rate_hz: int) -> Question:
        if rate_hz == self.rate_hz:
            return self
        audio = resample(self.audio.astype(np.float32) / 32768, self.rate_hz, rate_hz)
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        return Question(self.text, pcm, rate_hz, last_speech_sample(pcm, rate_hz))


def last_speech_sample(audio: np.ndarray, rate_hz: int) -> int:
    """Index just past the last 20 ms frame within 35 dB of the loudest one."""
    frame = rate_hz * FRAME_MS // 1000
    frames = audio[: len(audio) // frame * frame].astype(np.float32).reshape(-1, frame)
    if not len(frames):
        return 0
    rms = np.sqrt((frames**2).mean(axis=1)) + 1e-9
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > QUIET_DB)[0]
    return int((loud[-1] + 1) * frame)


def cache_dir() -> Path:
    base = os.environ.get("VOICE_CACHE_DIR") or Path.home() / ".cache" / "voice-agent"
    return Path(base) / "loadtest"


def questions(texts: tuple[str, ...] = QUESTIONS, rate_hz: int = 16000) -> list[Question]:
    """The questions as speech at `rate_hz` (synthesized once, then read from the cache)."""
    from voice.models import model_path

    voice_path = model_path("piper-joe")
    out: list[Question] = []
    voice = None
    for text in texts:
        key = hashlib.sha256(f"{voice_path.name}\0{text}".encode()).hexdigest()[:16]
        path = cache_dir() / f"{key}.npy"
        if path.is_file():
            audio = np.load(path)
        else:
            if voice is None:
                voice = _load_voice(voice_path)
            audio = _synthesize(voice, text)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, audio)
            tmp.replace(path)  # atomic: parallel load tests never read half a file
        native = Question(text, audio, voice_rate_hz(voice_path), 0)
        out.append(native.at_rate(rate_hz))
    return out


def voice_rate_hz(voice_path: Path) -> int:
    import json

    return int(json.loads(Path(f"{voice_path}.json").read_text())["audio"]["sample_rate"])


def _load_voice(voice_path: Path):
    from piper import PiperVoice

    return PiperVoice.load(str(voice_path), config_path=f"{voice_path}.json")


def _synthesize(voice, text: str) -> np.ndarray:
    from piper import SynthesisConfig

    chunks = list(voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
    return np.concatenate([c.audio_int16_array for c in chunks])
