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

import asyncio
import logging
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice.codecs.codec_base import CodecDecoder, WindowPlan
from voice.tts.codec_engine import CodecEngine, CodecStream, stream_audio

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


@dataclass(frozen=True)
class SamplingSettings:
    """Orpheus's published defaults (engine_class.py: temperature 0.6, top_p 0.8, repetition 1.1-1.3)."""

    temperature: float = 0.6
    top_p: float = 0.8
    top_k: int = 0                # 0: off; else only the k best candidates (cheap on a full vocabulary)
    repetition_penalty: float = 1.1
    repetition_window: int = 64   # last generated tokens the penalty looks at
    seed: int | None = None


def sample_token(logits: np.ndarray, ids: np.ndarray | None, recent: deque[int], s: SamplingSettings,
                 rng: np.random.Generator) -> int:
    """Sample one id from `logits` restricted to `ids` (all when None): repetition penalty, temperature,
    top-p. Working on the allowed slice only keeps this ~0.1 ms for 4097 Orpheus candidates."""
    ids = np.arange(len(logits)) if ids is None else ids
    x = logits[ids].astype(np.float64)
    if s.repetition_penalty != 1.0 and recent:
        hit = np.isin(ids, np.fromiter(recent, dtype=np.int64))
        x[hit] = np.where(x[hit] > 0, x[hit] / s.repetition_penalty, x[hit] * s.repetition_penalty)
    if s.temperature <= 0:
        return int(ids[int(np.argmax(x))])
    if 0 < s.top_k < len(x):
        best = np.argpartition(-x, s.top_k)[: s.top_k]
        ids, x = ids[best], x[best]
    p = np.exp((x - x.max()) / s.temperature)
    p /= p.sum()
    if s.top_p < 1.0:
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), s.top_p)) + 1]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(ids[rng.choice(len(p), p=p)])


class CodecTokenLm:
    """A llama.cpp model that emits codec tokens, sampled in numpy over the ids allowed next.

    `generate` runs on a thread of its own and streams ids to the caller's loop; one generation at
    a time holds the context (others wait for the lock). Cancelling the consumer stops it at the
    next token. Tokens/s of the last generations are in `tokens_per_s`.
    """

    def __init__(self, gguf_path: str | Path, *, n_ctx: int = 2048, n_threads: int = 1, n_gpu_layers: int = 0) -> None:
        from llama_cpp import Llama

        if not Path(gguf_path).is_file():
            raise FileNotFoundError(f"token TTS model not found: {gguf_path}")
        self.path = Path(gguf_path)
        self._llm = Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                          n_gpu_layers=n_gpu_layers, verbose=False)
        self.n_ctx = n_ctx
        self.n_vocab = self._llm.n_vocab()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.tokens_per_s = 0.0   # of the last generation
        self.last_tokens = 0      # generated by the last generation

    @property
    def busy(self) -> bool:
        """A generation holds the context."""
        return self._lock.locked()

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        return self._llm.tokenize(text.encode(), add_bos=add_bos, special=special)

    def token_id(self, text: str) -> int:
        """The id of a single special token given as text (e.g. "<|c1_0|>")."""
        ids = self.tokenize(text, special=True)
        if len(ids) != 1:
            raise ValueError(f"{self.path.name}: {text!r} is not one token ({ids})")
        return ids[0]

    async def generate(self, prompt: list[int], *, sampling: SamplingSettings,
                       allowed: Callable[[int], np.ndarray | None] | None, stop_ids: frozenset[int],
                       max_tokens: int) -> AsyncIterator[int]:
        """Generated ids (stop ids excluded) until a stop id, `max_tokens`, or the context is full."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()
        max_tokens = min(max_tokens, self.n_ctx - len(prompt) - 1)

        def emit(item: int | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # loop closed: nobody listens any more
                cancel.set()

        args = (prompt, sampling, allowed, stop_ids, max_tokens, cancel, emit)
        threading.Thread(target=self._run, args=args, name="token-lm", daemon=True).start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()

    def _run(self, prompt: list[int], s: SamplingSettings, allowed: Callable[[int], np.ndarray | None] | None,
             stop_ids: frozenset[int], max_tokens: int, cancel: threading.Event,
             emit: Callable[[int | BaseException | None], None]) -> None:
        while not self._lock.acquire(timeout=0.05):
            if cancel.is_set() or self._closing.is_set():
                return emit(None)
        try:
            llm = self._llm
            llm.reset()
            llm.eval(prompt)
            rng = np.random.default_rng(s.seed)
            recent: deque[int] = deque(maxlen=s.repetition_window)
            started, generated = time.perf_counter(), 0
            while generated < max_tokens and not cancel.is_set() and not self._closing.is_set():
                # last-token logits: llama-cpp-python has no public getter without logits_all
                logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(self.n_vocab,))
                token = sample_token(logits, allowed(generated) if allowed else None, recent, s, rng)
                if token in stop_ids:
                    break
                emit(token)
                generated += 1
                recent.append(token)
                llm.eval([token])
            self.tokens_per_s = generated / max(time.perf_counter() - started, 1e-9)
            self.last_tokens = generated
            emit(None)
        except Exception as exc:
            log.exception("token LM generation failed")
            emit(exc)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Stop any generation at its next token, then free the model."""
        self._closing.set()
        with self._lock:
            self._llm.close()


class OrpheusEngine:
    """TtsEngine: text -> Orpheus prompt -> llama.cpp audio tokens -> SNAC frames -> 24 kHz chunks.

    `codec` is a SnacDecoder (this engine then owns a CodecEngine for it) or a shared CodecEngine.
    One generation runs at a time on the llama.cpp context (sessions queue for it); decoding is
    batched across all streams. Stopping the iteration stops generation at the next token.
    """

    def __init__(self, gguf_path: str | Path, codec: CodecEngine | CodecDecoder, *, voice: str = "tara",
                 n_threads: int = 1, max_tokens: int = 1200, n_ctx: int = 2048, n_gpu_layers: int = 0,
                 sampling: SamplingSettings | None = None, constrain: bool = True, coalesce: bool = True,
                 owns_codec: bool | None = None) -> None:
        self._owns_codec = not isinstance(codec, CodecEngine) if owns_codec is None else owns_codec
        self.codec = codec if isinstance(codec, CodecEngine) else CodecEngine(codec)
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
