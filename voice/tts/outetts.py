"""OuteTTS-1.0-style token TTS: a Llama emits DAC codes as `<|c1_N|><|c2_N|>` pairs, 75 frames/s.

Layout (outetts v1.0 SpecialTokens and PromptProcessor; llama.rn rn-tts.cpp OUTETTS_V1_0):
- prompt without a speaker profile: "<|im_start|>\\n<|text_start|>{text}<|text_end|>\\n<|audio_start|>\\n";
- the model then writes, per word, `<|word_start|>word<|features|><|t_0.32|><|energy_..|>...<|code|>`
  followed by c1/c2 pairs and `<|word_end|>`, and ends with `<|audio_end|>`;
- audio = the c1 codes and the c2 codes, in order, one frame = [c1, c2] (DAC 24 kHz, hop 320).
Ids are looked up by text in the GGUF's vocabulary, so real and tiny files both work.

`constrain=True` (default, for the random-weight test model) limits generation to c1 at even
steps and c2 at odd ones (plus <|audio_end|> at a frame boundary). A real OuteTTS model needs its
word structure: run it with `constrain=False`; the parser then skips the non-code tokens.
Speaker profiles (voice cloning prompts) are not supported: `voice` is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice.codecs.codec_base import CodecDecoder, WindowPlan
from voice.tts.codec_engine import CodecEngine, CodecStream, stream_audio
from voice.tts.orpheus import CodecTokenLm, SamplingSettings

log = logging.getLogger(__name__)

CODEBOOK_SIZE = 1024
CODES_PER_FRAME = 2
#: 16-frame windows (213 ms) keeping the middle 8 (107 ms): first audio after 16 frames = 32 code
#: tokens; streamed audio matches a one-shot decode within ~1% RMS (random-weight DAC, measured).
OUTETTS_WINDOW = WindowPlan(left_frames=4, hop_frames=8, right_frames=4)
#: outetts's published sampling for 1.0 (temperature 0.4, top_k 40, top_p 0.9, repetition 1.1).
OUTETTS_SAMPLING = SamplingSettings(temperature=0.4, top_p=0.9, top_k=40, repetition_penalty=1.1)


def prompt_text(text: str) -> str:
    return f"<|im_start|>\n<|text_start|>{' '.join(text.split())}<|text_end|>\n<|audio_start|>\n"


@dataclass(frozen=True)
class OuteTokenLayout:
    """Where the codes live in one GGUF's vocabulary."""

    c1_0: int
    c2_0: int
    audio_end: int
    im_end: int

    @classmethod
    def from_lm(cls, lm: CodecTokenLm) -> OuteTokenLayout:
        c1, c2 = lm.token_id("<|c1_0|>"), lm.token_id("<|c2_0|>")
        last = CODEBOOK_SIZE - 1
        if lm.token_id(f"<|c1_{last}|>") != c1 + last or lm.token_id(f"<|c2_{last}|>") != c2 + last:
            raise ValueError(f"{lm.path.name}: c1/c2 code tokens are not contiguous")
        return cls(c1, c2, lm.token_id("<|audio_end|>"), lm.token_id("<|im_end|>"))

    def allowed(self, n_generated: int, *, min_frames: int = 1) -> np.ndarray:
        """c1 codes at even steps (and audio end once `min_frames` exist), c2 codes at odd ones."""
        if n_generated % 2:
            return np.arange(self.c2_0, self.c2_0 + CODEBOOK_SIZE, dtype=np.int64)
        ids = np.arange(self.c1_0, self.c1_0 + CODEBOOK_SIZE, dtype=np.int64)
        return np.append(ids, self.audio_end) if n_generated // 2 >= min_frames else ids


class OuteFrameParser:
    """Token ids -> [c1, c2] frames. Non-code tokens (word markers, timings, features) are skipped
    and counted in `other_tokens`; a c2 without its c1, or a c1 after a c1, is a bad token: the
    half frame is dropped and parsing resumes at the next c1."""

    def __init__(self, layout: OuteTokenLayout) -> None:
        self.layout = layout
        self._c1: int | None = None
        self.frames = self.bad_tokens = self.other_tokens = 0

    def push(self, token_id: int) -> np.ndarray | None:
        c1 = token_id - self.layout.c1_0
        c2 = token_id - self.layout.c2_0
        if 0 <= c1 < CODEBOOK_SIZE:
            if self._c1 is not None:
                self.bad_tokens += 1
            self._c1 = c1
            return None
        if 0 <= c2 < CODEBOOK_SIZE:
            if self._c1 is None:
                self.bad_tokens += 1
                return None
            frame, self._c1 = np.array([self._c1, c2], dtype=np.int64), None
            self.frames += 1
            return frame
        if 0 <= c1 <= CODEBOOK_SIZE or 0 <= c2 <= CODEBOOK_SIZE:  # the spare code 1024 of each book
            self.bad_tokens += 1
        else:
            self.other_tokens += 1
        return None


class OuteTtsEngine:
    """TtsEngine: text -> OuteTTS prompt -> llama.cpp code tokens -> DAC frames -> 24 kHz chunks.

    `codec` is a DacDecoder (wrapped in a CodecEngine owned here) or a shared CodecEngine.
    """

    def __init__(self, gguf_path: str | Path, codec: CodecEngine | CodecDecoder, *, n_threads: int = 1,
                 max_tokens: int = 1500, n_ctx: int = 2048, n_gpu_layers: int = 0,
                 sampling: SamplingSettings | None = None, constrain: bool = True, coalesce: bool = True,
                 owns_codec: bool | None = None) -> None:
        self._owns_codec = not isinstance(codec, CodecEngine) if owns_codec is None else owns_codec
        self.codec = codec if isinstance(codec, CodecEngine) else CodecEngine(codec)
        if self.codec.decoder.codes_per_frame != CODES_PER_FRAME:
            raise ValueError(f"OuteTTS 1.0 needs a 2-codebook DAC, got {self.codec.decoder.codes_per_frame}")
        self.sample_rate_hz = self.codec.sample_rate_hz
        self.lm = CodecTokenLm(gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers)
        self.layout = OuteTokenLayout.from_lm(self.lm)
        self.max_tokens = max_tokens
        self.sampling = sampling or OUTETTS_SAMPLING
        self.constrain = constrain
        self.coalesce = coalesce
        self.last_parser: OuteFrameParser | None = None

    def prompt(self, text: str) -> list[int]:
        return self.lm.tokenize(prompt_text(text), special=True)

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[np.ndarray]:
        parser = OuteFrameParser(self.layout)
        self.last_parser = parser
        tokens = self.lm.generate(self.prompt(text), sampling=self.sampling,
                                  allowed=self.layout.allowed if self.constrain else None,
                                  stop_ids=frozenset({self.layout.audio_end, self.layout.im_end}),
                                  max_tokens=self.max_tokens)
        stream = CodecStream(self.codec, OUTETTS_WINDOW, coalesce=self.coalesce)
        async for chunk in stream_audio(tokens, parser.push, stream):
            yield chunk

    def close(self) -> None:
        self.lm.close()
        if self._owns_codec:
            self.codec.close()
