"""The TTS engine interface: text in, a stream of float32 mono audio chunks out.

Every engine fits it: Piper (phonemes -> waveform, per sentence), and the token-based engines
(an LLM emits audio-codec tokens that SNAC/DAC decode), which stream audio as codec frames arrive.
The consumer cancels by stopping iteration (`aclose()` on the generator, or task cancellation);
engines must then stop their work in the worker thread at the next step, not finish the sentence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TtsEngine(Protocol):
    """Process-wide TTS; one instance serves every session (worker thread(s) behind a batcher)."""

    #: Rate of the chunks `synthesize` yields, Hz.
    sample_rate_hz: int

    def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[np.ndarray]:
        """Audio for `text` as float32 mono chunks in [-1, 1] at `sample_rate_hz`, first chunk ASAP."""
        ...

    def close(self) -> None:
        """Stop the worker(s); pending syntheses end."""
        ...
