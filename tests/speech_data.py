"""Real speech with reference transcripts, and the WER used to score ASR (shared by all tests).

The clips are Debian's `pocketsphinx-testdata` (16 kHz mono s16): five LibriVox read-speech
sentences and five "cards" utterances. Tests skip, naming the package, only when the data or a
model is absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

DATA_DIR = Path("/usr/share/pocketsphinx/test/data")
DATA_HINT = "speech test data missing: apt-get install pocketsphinx-testdata"
SAMPLE_RATE_HZ = 16000

_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
_LINE = re.compile(r"^<s>(?P<text>.*)</s>\s*\((?P<id>[^)]+)\)\s*$")


def _clips(folder: str, transcription: str) -> list[tuple[Path, str]]:
    path = DATA_DIR / folder / transcription
    if not path.is_file():
        return []
    clips = []
    for line in path.read_text().splitlines():
        match = _LINE.match(line.strip())
        if match:
            wav = DATA_DIR / folder / f"{match['id']}.wav"
            if wav.is_file():
                clips.append((wav, " ".join(match["text"].split())))
    return clips


def librivox_clips() -> list[tuple[Path, str]]:
    """Five LibriVox sentences (3.0–7.1 s) with references; [] when the package is absent."""
    return _clips("librivox", "transcription")


def cards_clips() -> list[tuple[Path, str]]:
    """Five short card names ("ten of clubs", 1.1–3.5 s) with references; [] when absent."""
    return _clips("cards", "cards.transcription")


def all_clips_or_skip() -> list[tuple[Path, str]]:
    clips = librivox_clips() + cards_clips()
    if not clips:
        pytest.skip(DATA_HINT)
    return clips


def load_wav_16k(path: Path) -> np.ndarray:
    """A mono WAV as float32 in [-1, 1) at 16 kHz (resampled with soxr if stored otherwise)."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1).astype(np.float32)
    if rate != SAMPLE_RATE_HZ:
        import soxr

        mono = soxr.resample(mono, rate, SAMPLE_RATE_HZ).astype(np.float32)
    return mono


def normalize_text(text: str) -> str:
    """Lower case, "mr." -> "mister", punctuation removed (hyphens split words), 0–10 as words."""
    text = text.lower()
    text = re.sub(r"\bmr\.?(?=\s|$)", "mister", text)
    text = re.sub(r"[^\w\s']|_", " ", text)
    words = [_NUMBERS[int(w)] if w.isdigit() and int(w) <= 10 else w for w in text.split()]
    return " ".join(words)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one hypothesis after normalize_text on both sides."""
    return corpus_wer([(reference, hypothesis)])


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """WER over a whole set: total errors / total reference words."""
    refs = [normalize_text(r) for r, _ in pairs]
    hyps = [normalize_text(h) for _, h in pairs]
    return jiwer.wer(refs, hyps)


def model_path_or_skip(name: str) -> Path:
    """A registry model's path (voice.models), or skip naming the package to install."""
    from voice.models import ModelMissing, model_path

    try:
        return model_path(name)
    except ModelMissing as exc:
        pytest.skip(str(exc))
