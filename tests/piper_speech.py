"""Test speech made with the packaged Piper voice (real neural TTS, CPU): WAV files + their text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SENTENCES = (
    "I would like to book a table for four people tonight.",
    "What is the weather going to be like tomorrow morning?",
    "Please remind me to call my sister at six o'clock.",
    "Can you tell me how long the drive to the airport takes?",
)


def synthesize(text: str) -> tuple[np.ndarray, int]:
    """int16 mono audio and its sample rate (22,050 Hz for the joe voice).

    Noise off: Piper's VITS samples prosody noise from an unseeded generator, so the same text
    came out different in every process, and whisper-tiny.en heard "Italian" as "it telling" in
    some of them (a CI failure). Test input must be the same on every run.
    """
    from piper import PiperVoice, SynthesisConfig

    from voice.models import model_path

    path = model_path("piper-joe")
    voice = PiperVoice.load(str(path), config_path=f"{path}.json")
    chunks = list(voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
    return np.concatenate([c.audio_int16_array for c in chunks]), chunks[0].sample_rate


def write_utterances(folder: Path, texts: tuple[str, ...] = SENTENCES, gap_s: float = 1.2) -> tuple[Path, list[str]]:
    """One WAV with the sentences separated by silence (so VAD splits them), plus the references."""
    parts = []
    rate = 22050
    for text in texts:
        audio, rate = synthesize(text)
        silence = np.zeros(int(gap_s * rate), np.int16)
        parts += [silence, audio]
    parts.append(np.zeros(int(gap_s * rate), np.int16))
    path = folder / "piper_utterances.wav"
    sf.write(str(path), np.concatenate(parts), rate, subtype="PCM_16")
    return path, list(texts)
