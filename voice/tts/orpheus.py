"""Orpheus-style token TTS: a Llama emits SNAC codes as tokens, 7 per 85.3 ms frame.

Token layout (canopyai Orpheus-TTS, orpheus_tts/decoder.py `turn_token_into_id` and
`convert_to_audio`; engine_class.py `_format_prompt`):
- audio token id = 128266 + 4096 * position + code, position = index in the frame (0..6), code in
  [0, 4096); i.e. `<custom_token_{10 + 4096 * position + code}>` with custom_token_N = 128256 + N;
- the 7 positions fill SNAC's layers: 0 -> layer 0; 1, 4 -> layer 1; 2, 3, 5, 6 -> layer 2;
- prompt: <start_of_human 128259> + tokenize("{voice}: {text}") (with <|begin_of_text|>) +
  <|eot_id|> 128009, <end_of_human 128260>, <start_of_ai 128261>, <start_of_speech 128257>;
  generation ends with <end_of_speech 128258>;
- streaming: decode the last 4 frames (28 tokens), keep samples 2048:4096 -> WindowPlan(1, 1, 2).
Generation here is constrained to the ids the next position allows (plus end of speech at a frame
boundary), so even a random-weight model yields a well-formed stream; the parser still checks
every token and resynchronises instead of crashing, for models served without the constraint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from voice.codecs.codec_base import WindowPlan
from voice.tts.codec_engine import CodecEngine, CodecStream, stream_audio
from voice.tts.token_lm import CodecTokenLm, SamplingSettings

log = logging.getLogger(__name__)

START_OF_TEXT = 128000
END_OF_TEXT = 128009  # <|eot_id|>
CUSTOM_TOKEN_0 = 128256
START_OF_SPEECH, END_OF_SPEECH = 128257, 128258
START_OF_HUMAN, END_OF_HUMAN = 128259, 128260
START_OF_AI, END_OF_AI = 128261, 128262
AUDIO_TOKEN_0 = CUSTOM_TOKEN_0 + 10  # <custom_token_10>: code 0 at position 0
CODEBOOK_SIZE = 4096
TOKENS_PER_FRAME = 7
#: Orpheus position -> our SNAC frame order [l0, l1a, l1b, l2a, l2b, l2c, l2d] (voice/codecs/snac.py).
SNAC_ORDER = (0, 1, 4, 2, 3, 5, 6)
ORPHEUS_WINDOW = WindowPlan(left_frames=1, hop_frames=1, right_frames=2)
VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")  # Orpheus 3B fine-tune speakers
_CUSTOM = re.compile(r"<custom_token_(\d+)>")


def audio_token_id(position: int, code: int) -> int:
    """The token id for `code` at frame `position` (0..6)."""
    if not (0 <= position < TOKENS_PER_FRAME and 0 <= code < CODEBOOK_SIZE):
        raise ValueError(f"position {position} / code {code} out of range")
    return AUDIO_TOKEN_0 + position * CODEBOOK_SIZE + code


def custom_token_ids(text: str) -> list[int]:
    """Token ids from `<custom_token_N>` text (what an OpenAI-compatible server streams back)."""
    return [CUSTOM_TOKEN_0 + int(n) for n in _CUSTOM.findall(text)]


def to_snac_frame(codes: list[int] | np.ndarray) -> np.ndarray:
    """7 codes in Orpheus order -> SNAC frame order (the redistribution to layers 0/1/2)."""
    return np.asarray(codes, dtype=np.int64)[list(SNAC_ORDER)]


def prompt_ids(text_ids: list[int]) -> list[int]:
    """Wrap the tokenized "{voice}: {text}" (starting with <|begin_of_text|>) in Orpheus's markers."""
    return [START_OF_HUMAN, *text_ids, END_OF_TEXT, END_OF_HUMAN, START_OF_AI, START_OF_SPEECH]


class OrpheusFrameParser:
    """Token ids -> SNAC frames; a frame is released only when all 7 of its tokens are in.

    A token's id says which position it belongs to, so a bad stream is detectable: a token that is
    not an audio token (or is out of range) is skipped; a token of the wrong position drops the
    partial frame and the parser waits for the next position-0 token (resync). Both are counted
    in `bad_tokens` / `dropped_frames`; nothing raises.
    """

    def __init__(self) -> None:
        self._codes: list[int] = []
        self.frames = 0
        self.bad_tokens = 0
        self.dropped_frames = 0
        self.ended = False  # end of speech seen

    @property
    def pending_tokens(self) -> int:
        """Tokens of the incomplete frame held back."""
        return len(self._codes)

    def push(self, token_id: int) -> np.ndarray | None:
        """Feed one token; returns a complete frame in SNAC order, or None."""
        if token_id == END_OF_SPEECH:
            self.ended = True
            return None
        offset = token_id - AUDIO_TOKEN_0
        if not 0 <= offset < TOKENS_PER_FRAME * CODEBOOK_SIZE:
            self.bad_tokens += 1
            return None
        position, code = divmod(offset, CODEBOOK_SIZE)
        if position != len(self._codes):
            self.bad_tokens += 1
            if self._codes:
                self.dropped_frames += 1
            self._codes = []
            if position != 0:
                return None
        self._codes.append(code)
        if len(self._codes) < TOKENS_PER_FRAME:
            return None
        frame, self._codes = to_snac_frame(self._codes), []
        self.frames += 1
        return frame


def allowed_audio_ids(n_generated: int, *, min_frames: int = 1) -> np.ndarray:
    """Ids the model may emit as token number `n_generated`: its position's 4096 codes, plus end of
    speech at a frame boundary once `min_frames` frames exist."""
    position = n_generated % TOKENS_PER_FRAME
    first = AUDIO_TOKEN_0 + position * CODEBOOK_SIZE
    ids = np.arange(first, first + CODEBOOK_SIZE, dtype=np.int64)
    if position == 0 and n_generated // TOKENS_PER_FRAME >= min_frames:
        ids = np.append(ids, END_OF_SPEECH)
    return ids


class OrpheusEngine:
    """TtsEngine: text -> Orpheus prompt -> llama.cpp audio tokens -> SNAC frames -> 24 kHz chunks.

    `codec` is a SnacDecoder (this engine then owns a CodecEngine for it) or a shared CodecEngine.
    One generation runs at a time on the llama.cpp context (sessions queue for it); decoding is
    batched across all streams. Stopping the iteration stops generation at the next token.
    """

    def __init__(self, gguf_path: str | Path, codec: CodecEngine | object, *, voice: str = "tara",
                 n_threads: int = 1, max_tokens: int = 1200, n_ctx: int = 2048, n_gpu_layers: int = 0,
                 sampling: SamplingSettings | None = None, constrain: bool = True, coalesce: bool = True) -> None:
        self._owns_codec = not isinstance(codec, CodecEngine)
        self.codec = codec if isinstance(codec, CodecEngine) else CodecEngine(codec)  # type: ignore[arg-type]
        if self.codec.decoder.codes_per_frame != TOKENS_PER_FRAME:
            raise ValueError(f"Orpheus needs a SNAC decoder, got {self.codec.decoder.name}")
        self.sample_rate_hz = self.codec.sample_rate_hz
        self.lm = CodecTokenLm(gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers)
        if self.lm.n_vocab < AUDIO_TOKEN_0 + TOKENS_PER_FRAME * CODEBOOK_SIZE:
            raise ValueError(f"{gguf_path}: {self.lm.n_vocab} tokens, too few for Orpheus's layout")
        self.voice = voice
        self.max_tokens = max_tokens
        self.sampling = sampling or SamplingSettings()
        self.constrain = constrain
        self.coalesce = coalesce
        self.last_parser: OrpheusFrameParser | None = None

    def prompt(self, text: str, voice: str | None = None) -> list[int]:
        return prompt_ids(self.lm.tokenize(f"{voice or self.voice}: {text}", add_bos=True))

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[np.ndarray]:
        parser = OrpheusFrameParser()
        self.last_parser = parser
        tokens = self.lm.generate(self.prompt(text, voice), sampling=self.sampling,
                                  allowed=allowed_audio_ids if self.constrain else None,
                                  stop_ids=frozenset({END_OF_SPEECH, END_OF_AI, END_OF_TEXT}),
                                  max_tokens=self.max_tokens)
        stream = CodecStream(self.codec, ORPHEUS_WINDOW, coalesce=self.coalesce)
        async for chunk in stream_audio(tokens, parser.push, stream):
            yield chunk
        if parser.bad_tokens:
            log.warning("orpheus: %d bad tokens, %d frames dropped", parser.bad_tokens, parser.dropped_frames)

    def close(self) -> None:
        self.lm.close()
        if self._owns_codec:
            self.codec.close()
