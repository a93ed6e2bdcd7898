"""In-process llama.cpp engine: `contexts` llama.cpp contexts shared by all sessions, one thread each.

Why not the AdaptiveBatcher: llama-cpp-python's `Llama` decodes one sequence at a time (it cannot
batch requests) and is not thread-safe. So each `Llama` object is owned by ONE worker thread for
its whole life. Requests from all sessions wait in one queue and the next free worker takes the
one that has had the fewest speakable pieces (a new turn: none), then the oldest: N sessions share
N contexts, and a reply gives its context up between pieces while another waits (below). Raise
`contexts` (or use an OpenAI-compatible server with parallel slots) when many sessions overlap.
Each context loads the weights again: on CPU they are mmap'd and shared through the page cache, on
a GPU every context holds its own copy in VRAM.

Latency: llama-cpp-python reuses the KV cache of the longest common token prefix with the previous
request on the same `Llama`; everything after it is evaluated again (~200 tokens/s on 2 CPU cores).
With `contexts > 1` a free request goes to the idle context where it costs least to evaluate and
evicts least of its own conversation (`best_context`, on a plain-text rendering of the prompt and
GenerationOptions.conversation). So once a conversation has some history, a round that offers tools
(a different system block) lands on the context that served the last such round, and the plain turn
after it finds its history still warm in the other: with one context each switch re-evaluated the
whole prompt (1.5-2 s on CPU). Waiting for a busy context that would fit better is never done: that
could cost a whole reply, the lost prefix costs one evaluation. And since replies now take turns on
contexts (below), a context often last served someone else: so every finished reply's sequence is
kept (`SequenceStore`, `kv_store_mb`), and a request restores the stored sequence that shares most
of its prompt when that beats what its context holds (a memcpy instead of seconds of evaluation).

Sharing a context between replies (`interleave`, on by default): a reply is generated far faster
than it is spoken (20-40 tokens/s against ~3 spoken), so holding a context for a whole reply makes
another caller's turn wait for text nobody will hear for seconds (measured in the 30-minute soak on
2 contexts and 5 callers: the first token of the worst turns came 10-15 s after the end of speech).
So each time a reply completes a speakable piece (the TTS chunker's cut: its consumer can speak it
now) while every context is busy and a waiting request has no more pieces than it, the reply gives
its context up: its sequence (KV cells and tokens, ~12 KB per token for a 0.5B model, a memcpy) is
saved and it queues again. The queue serves the fewest pieces first, then the oldest, so a new
turn's first sentence goes before the second sentence of a reply already being spoken. A resumed
reply restores its sequence (when another request used the context meanwhile) and continues from
the text already sent: the prompt is rendered again with that text appended, and llama.cpp's
prefix match finds all of it cached (measured: 30 ms to the next token). A reply that is writing
a tool call, or must be one (an eager grammar's state cannot be saved), keeps its context: the
agent holds such text back (voice/llm/toolcalls.SpeechGate, applied here too), so it completes no
piece and is never counted as speech sent ahead.
That is why the engine renders prompts itself with the GGUF's chat template (`chat_formatter`,
built as llama-cpp-python builds "chat_template.default") and streams raw completions.

Cancellation: when the consumer stops iterating (aclose(), task cancellation, or a `break` followed
by garbage collection of the generator: wrap it in `contextlib.aclosing` to make that immediate),
a flag is set that the worker checks after every streamed token; it then closes the llama iterator
and takes the next request. A cancel that arrives during prompt evaluation waits for that to end
(prompt tokens / prompt speed, e.g. 200 new tokens at ~200 tok/s = 1 s on 2 CPU cores).
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Collection, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp.llama_chat_format import ChatFormatterResponse, Jinja2ChatFormatter
from llama_cpp.llama_grammar import LlamaGrammar

from voice.batching import QueueWaits, busy_batchers
from voice.llm.base import GenerationOptions
from voice.llm.errors import LlmError, check_messages
from voice.llm.grammar import LazyGrammarLlama, lazy_tool_grammar
from voice.llm.toolcalls import SpeechGate
from voice.tts.chunker import TextChunker

log = logging.getLogger(__name__)

RESTORE_GAIN = 16  # tokens a stored sequence must save over the context's own prefix to be restored
CLOSE_JOIN_S = 10.0  # how long close() waits for each worker to finish its token

_DELTA, _END, _ERROR = "delta", "end", "error"
_SUSPEND = "suspend"  # not sent: the reply gave its context up and queues again


def resolve_llm_device(requested: str, cuda_available: bool,
                       n_gpu_layers: int | None = None) -> tuple[str, int]:
    """("auto" | "cpu" | "cuda", GPU offload usable, layers asked for) -> (device, n_gpu_layers).

    CUDA offloads every layer by default (-1: the whole 0.5B model fits in well under 1 GB of VRAM);
    CPU offloads none. "auto" picks CUDA when this llama.cpp build can offload. An explicit layer
    count is kept on CUDA and refused on an explicit "cpu", where it would silently do nothing.
    """
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {requested!r}")
    if requested == "cuda" and not cuda_available:
        raise ValueError("device 'cuda' requested but this llama-cpp-python build cannot offload to a GPU "
                         "(rebuild it with CMAKE_ARGS=-DGGML_CUDA=on)")
    if requested == "cpu" and n_gpu_layers:
        raise ValueError(f"n_gpu_layers={n_gpu_layers} needs device 'cuda' or 'auto', not 'cpu'")
    if requested == "cuda" or (requested == "auto" and cuda_available):
        return "cuda", -1 if n_gpu_layers is None else n_gpu_layers
    return "cpu", 0


def gpu_offload_available() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


def pick_threads(n_threads: int, n_threads_solo: int | None, busy_batchers: int, generating: int) -> int:
    """Threads for the next token. On a small CPU llama.cpp's threads spin at barriers: two threads
    next to a running ASR/TTS/codec batch (or another context) collapse its speed, but alone they
    double it (measured on 2 cores, Qwen2.5-0.5B: 20 -> 39 tokens/s), and the first sentence of a
    reply is mostly generated while the TTS still waits for it."""
    if n_threads_solo is None or busy_batchers > 0 or generating > 1:
        return n_threads
    return n_threads_solo


def prompt_text(messages: Sequence[dict[str, Any]], options: GenerationOptions) -> str:
    """The prompt as plain text in the order chat templates render it (system text, tools, then the
    messages): two prompts share a token prefix about as long as these texts share a prefix."""
    first = messages[0] if messages else {}
    system = str(first.get("content", "")) if first.get("role") == "system" else ""
    rest = messages[1:] if system else messages
    tools = json.dumps(options.tools, sort_keys=True) if options.tools else ""
    return "\x00".join([system, tools, *(f"{m.get('role')}:{m.get('content')}" for m in rest)])


def common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search over slice compares: C speed)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class CachedPrompt:
    """What routing knows of a context's KV cache: the last prompt it evaluated, whose conversation
    that was, and when the context was last released (a counter)."""

    prompt: str = ""
    conversation: str | None = None
    used: int = 0


def best_context(prompt: str, conversation: str | None, idle: Collection[int],
                 caches: Sequence[CachedPrompt]) -> int:
    """The idle context where `prompt` costs least: what must be evaluated (what follows the prefix it
    shares with the context's cached prompt) plus what is thrown away (the rest of that prompt, which
    the conversation's next turn would evaluate again). Throwing away another conversation's prompt
    counts nothing: it may never come back, and some context must hold the new one. Ties go to the
    least recently used context.

    So a turn that extends its conversation's prompt stays on that context, and a tool round goes to
    another context once the plain history it would evict is longer than what that one must evaluate.
    """
    def cost(i: int) -> tuple[int, int]:
        cached = caches[i]
        shared = common_prefix_len(prompt, cached.prompt)
        ours = conversation is None or cached.conversation in (None, conversation)
        return len(prompt) - shared + (len(cached.prompt) - shared if ours else 0), cached.used
    return min(idle, key=cost)


def pick_request(requests: Sequence[tuple[str, str | None]], worker: int, idle: Collection[int],
                 caches: Sequence[CachedPrompt]) -> int | None:
    """Index of the queued (prompt, conversation) that the free `worker` should take next, or None.

    Oldest first, except that a request that fits another idle worker better is left to it.
    """
    for i, (prompt, conversation) in enumerate(requests):
        if best_context(prompt, conversation, idle, caches) == worker:
            return i
    return None


WORDS_PER_S = 3.0  # a TTS voice speaks 2.5-3 words/s: the faster rate underestimates a reply's lead


def speech_ahead_s(words: int, first_sent_at: float | None, now: float) -> float:
    """Seconds of speech a reply has sent that its caller cannot have heard yet, counting playback
    from its first delta (it starts later: the TTS has to synthesize it first)."""
    return 0.0 if first_sent_at is None else words / WORDS_PER_S - (now - first_sent_at)


def should_yield(pieces: int, waiting: Iterable[int], idle_contexts: int, *,
                 ahead_s: float = 0.0, starting: bool = False, pause_ahead_s: float | None = None) -> bool:
    """Whether a reply that has just completed its `pieces`-th speakable piece gives its context up.

    To a waiting request (`waiting`: the pieces each has had) while no context is idle, if it is no
    further ahead: a new turn (0 pieces) always, and replies already being spoken take turns piece
    by piece instead of one waiting for the other's end. And, with `pause_ahead_s`, whenever another
    turn is `starting` (has no piece yet) and this reply has more than that much speech sent ahead
    (`ahead_s`): it pauses (held_back) so the starting turn's prompt and first words get the CPU.
    """
    if pause_ahead_s is not None and starting and ahead_s > pause_ahead_s:
        return True
    return idle_contexts == 0 and any(w <= pieces for w in waiting)


def held_back(pieces: int, ahead_s: float, starting: bool, pause_ahead_s: float | None) -> bool:
    """Whether a suspended reply waits although a context is free: while another turn is starting
    and it still has more than `pause_ahead_s` of speech ahead (it resumes before that is spoken)."""
    return pause_ahead_s is not None and pieces > 0 and starting and ahead_s > pause_ahead_s


@dataclass
class SavedSequence:
    """A suspended reply's llama.cpp sequence: its KV cells and the tokens they hold."""

    tokens: npt.NDArray[np.intc]
    data: ctypes.Array[ctypes.c_uint8]


def save_sequence(llama: llama_cpp.Llama) -> SavedSequence:
    size = llama_cpp.llama_state_seq_get_size(llama.ctx, 0)
    data = (ctypes.c_uint8 * size)()
    if llama_cpp.llama_state_seq_get_data(llama.ctx, data, size, 0) != size:
        raise RuntimeError("llama.cpp could not copy the sequence state")
    return SavedSequence(llama.input_ids[:llama.n_tokens].copy(), data)


def shared_prefix(a: npt.NDArray[np.intc], b: Sequence[int]) -> int:
    """Length of the common prefix of two token sequences."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != np.asarray(b[:n], dtype=np.intc))
    return int(diff[0]) if len(diff) else n


class SequenceStore:
    """The sequences of finished replies, one per (conversation, tools offered), least recently
    used dropped beyond `budget_bytes`: any context can continue any conversation by restoring its
    sequence (a memcpy) instead of evaluating its history again (~50-200 tokens/s on a busy CPU).
    Without it, a context that served another conversation's reply (or a resumed one) has lost the
    prefix the next turn or tool round would reuse. Thread-safe (one per engine, all workers)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[tuple[str | None, bool], SavedSequence] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, key: tuple[str | None, bool], saved: SavedSequence) -> None:
        with self._lock:
            if (old := self._items.pop(key, None)) is not None:
                self._bytes -= len(old.data)
            if len(saved.data) > self.budget_bytes:
                return
            self._items[key] = saved
            self._bytes += len(saved.data)
            while self._bytes > self.budget_bytes:
                self._bytes -= len(self._items.popitem(last=False)[1].data)

    def forget(self, conversation: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == conversation]:
                self._bytes -= len(self._items.pop(key).data)

    @property
    def bytes(self) -> int:
        return self._bytes

    def best(self, tokens: Sequence[int]) -> tuple[int, SavedSequence | None]:
        """The stored sequence sharing the longest prefix with `tokens`, and that length."""
        with self._lock:
            found = max(((shared_prefix(saved.tokens, tokens), key) for key, saved in self._items.items()),
                        default=(0, None), key=lambda pair: pair[0])
            if found[1] is None:
                return 0, None
            self._items.move_to_end(found[1])
            return found[0], self._items[found[1]]


def restore_sequence(llama: llama_cpp.Llama, saved: SavedSequence) -> None:
    """Put `saved` back in the context, unless the context still holds it (no one used it since).
    On failure the context is left empty: the prompt is then evaluated again, slower but right."""
    n = len(saved.tokens)
    if llama.n_tokens == n and np.array_equal(llama.input_ids[:n], saved.tokens):
        return
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
    llama.n_tokens = 0
    if llama_cpp.llama_state_seq_set_data(llama.ctx, saved.data, len(saved.data), 0) != len(saved.data):
        log.warning("llama.cpp could not restore a suspended reply; evaluating its prompt again")
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
        return
    llama.input_ids[:n] = saved.tokens
    llama.n_tokens = n
    llama._requires_eval = True  # the restored state has no logits: generate() evaluates one token


def chat_formatter(llama: llama_cpp.Llama, name: str) -> Jinja2ChatFormatter:
    """The GGUF's own chat template (it renders `tools`), built as llama-cpp-python builds its
    "chat_template.default" handler."""
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError(f"{name} has no chat template (tokenizer.chat_template): use an instruct GGUF")

    def text(token: int) -> str:
        return llama._model.token_get_text(token) if token != -1 else ""
    return Jinja2ChatFormatter(template=template, eos_token=text(llama.token_eos()),
                               bos_token=text(llama.token_bos()), stop_token_ids=[llama.token_eos()])


@dataclass(eq=False)
class _Request:
    """One chat request; the worker thread hands (kind, value) items to `queue` on the consumer's loop."""

    messages: list[dict[str, Any]]
    options: GenerationOptions
    prompt: str  # prompt_text(), for routing
    loop: asyncio.AbstractEventLoop
    evaluated: bool = False  # reached llama.cpp (its prompt is in the context's KV cache)
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancelled_at: float = 0.0  # time.monotonic() of the cancel, s
    queued_at: float = field(default_factory=time.monotonic)
    gate: SpeechGate = field(default_factory=SpeechGate)  # the text sent (a resumed reply continues
                                                          # it) and what of it the agent speaks
    speech: str = ""  # what the gate let through
    pieces: int = 0  # speakable pieces in `speech` (the queue serves the fewest first)
    chunker: TextChunker = field(default_factory=TextChunker)
    first_sent_at: float | None = None  # time.monotonic() of the first delta
    saved: SavedSequence | None = None  # while suspended

    def ahead_s(self, now: float) -> float:
        return speech_ahead_s(len(self.speech.split()), self.first_sent_at, now)

    def preemptible(self) -> bool:
        """A reply that is (or must be) a call keeps its context: its caller waits for the call, and
        a grammar's state cannot be saved."""
        return not self.options.require_call and not self.gate.held

    def cancel(self) -> None:
        if not self.cancelled.is_set():
            self.cancelled_at = time.monotonic()
            self.cancelled.set()

    def send(self, kind: str, value: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))
        except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
            self.cancel()


class LlamaCppEngine:
    """Process-wide llama.cpp chat model; see the module docstring for the threading and KV reuse."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 4096,
        n_threads: int = 2,
        n_threads_batch: int | None = None,
        n_threads_solo: int | None = None,
        n_gpu_layers: int | None = None,
        device: Literal["cpu", "cuda", "auto"] = "cpu",
        contexts: int = 1,
        interleave: bool = True,
        pause_ahead_s: float | None = 3.0,
        kv_store_mb: int = 256,
        seed: int = llama_cpp.LLAMA_DEFAULT_SEED,
        verbose: bool = False,
    ) -> None:
        """`n_ctx`: tokens per context (prompt + reply). `n_threads`: CPU threads while generating;
        `n_threads_batch`: while evaluating the prompt (None: same as n_threads, never more threads
        than asked for: on a small box oversubscription collapses llama.cpp's speed).
        `n_threads_solo`: while generating a token when no other model work runs (see pick_threads).
        `interleave`: replies give their context up between speakable pieces while others wait
        (module docstring); `pause_ahead_s` (None: never): a reply with more speech than this sent
        ahead pauses while another turn starts. `kv_store_mb`: finished replies' sequences kept for
        any context to continue (SequenceStore; 0: none). Prompts use the GGUF's chat template."""
        if contexts < 1:
            raise ValueError(f"contexts must be >= 1, not {contexts}")
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF model file {path} does not exist")
        self.device, self.n_gpu_layers = resolve_llm_device(device, gpu_offload_available(), n_gpu_layers)
        self.name = f"llama.cpp:{path.name}"
        cores = os.cpu_count() or 1
        if self.device == "cpu" and contexts * n_threads > cores:
            log.warning("%d contexts x %d threads on %d cores: llama.cpp slows down sharply when "
                        "oversubscribed (shared/notes/models.md §2)", contexts, n_threads, cores)
        self.n_ctx = n_ctx
        self.n_threads, self.n_threads_batch = n_threads, n_threads_batch or n_threads
        self.n_threads_solo = n_threads_solo if self.device == "cpu" else None
        self._threads_in_use = [(n_threads, self.n_threads_batch)] * contexts
        #: ms from a consumer's cancel to its worker being free again (last cancelled request), or None.
        self.last_cancel_release_ms: float | None = None
        started = time.monotonic()
        self.interleave, self.pause_ahead_s = interleave, (pause_ahead_s if interleave else None)
        self._store = SequenceStore(kv_store_mb << 20)
        self._llamas = [
            LazyGrammarLlama(str(path), n_gpu_layers=self.n_gpu_layers, n_ctx=n_ctx, n_threads=n_threads,
                             n_threads_batch=n_threads_batch or n_threads, seed=seed, verbose=verbose)
            for _ in range(contexts)
        ]
        try:
            self._formatter = chat_formatter(self._llamas[0], path.name)
        except ValueError:
            for llama in self._llamas:
                llama.close()
            raise
        log.info("loaded %s on %s (n_gpu_layers=%d, n_ctx=%d, threads=%d, contexts=%d) in %.2f s",
                 path.name, self.device, self.n_gpu_layers, n_ctx, n_threads, contexts,
                 time.monotonic() - started)
        self._cond = threading.Condition()
        self._queue: deque[_Request] = deque()
        self._idle: set[int] = set(range(contexts))
        self._caches = [CachedPrompt() for _ in range(contexts)]
        self._releases = itertools.count(1)  # CachedPrompt.used
        self._active: dict[int, _Request] = {}
        self._grammars: dict[str, LlamaGrammar | None] = {}  # tool-call grammars by (tools, callable) JSON
        self._waits = QueueWaits()  # request queued -> a context takes it
        self._closed = False
        self._threads = [threading.Thread(target=self._worker, args=(i,), name=f"llama-{i}", daemon=True)
                         for i in range(contexts)]
        for thread in self._threads:
            thread.start()

    @property
    def contexts(self) -> int:
        return len(self._llamas)

    async def stream_chat(self, messages: list[dict[str, Any]],
                          options: GenerationOptions | None = None) -> AsyncIterator[str]:
        """Text deltas of the reply, from the context that fits the prompt best (module docstring).

        Raises LlmError for a malformed request, a prompt longer than n_ctx, a llama.cpp failure
        or a closed engine.
        """
        check_messages(messages)
        options = options or GenerationOptions()
        request = _Request(messages, options, prompt_text(messages, options), asyncio.get_running_loop())
        with self._cond:
            if self._closed:
                raise LlmError("the llama.cpp engine is closed")
            self._queue.append(request)
            self._cond.notify_all()
        try:
            while True:
                kind, value = await request.queue.get()
                if kind == _DELTA:
                    yield value
                elif kind == _END:
                    return
                else:
                    raise value
        finally:
            request.cancel()
            with self._cond:
                if request in self._queue:
                    self._queue.remove(request)
                    self._cond.notify_all()  # it may have been the turn paused replies wait for

    def forget(self, conversation: str) -> None:
        """The conversation's session has ended: drop its stored sequences (its id never returns)."""
        self._store.forget(conversation)

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` (no BOS), on the caller's thread.

        Safe next to a running decode: llama_tokenize only reads the vocabulary (llama.cpp's own
        server tokenizes on its HTTP threads the same way) and each call uses its own buffer.
        """
        return len(self._llamas[0].tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prompt_tokens_evaluated(self) -> int:
        """Prompt tokens llama.cpp has evaluated so far, all contexts (a cache miss costs these)."""
        return sum(llama_cpp.llama_perf_context(llama.ctx).n_p_eval for llama in self._llamas)

    def queue_delay_ms(self) -> float:
        """How long requests waited for a free context lately, ms (QueueWaits.delay_ms): replies
        wait while every context is busy with other sessions' replies (admission control). Only
        requests that have not started count: a suspended reply waits by design."""
        with self._cond:
            oldest = min((r.queued_at for r in self._queue if not r.pieces), default=None)
            return self._waits.delay_ms(time.monotonic(), oldest)

    def close(self) -> None:
        """Fail queued requests, stop running ones at their next token, free the contexts."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            for request in self._active.values():
                request.cancel()
            self._cond.notify_all()
        for request in pending:
            request.send(_ERROR, LlmError("the llama.cpp engine was closed"))
        for thread, llama in zip(self._threads, self._llamas, strict=True):
            thread.join(CLOSE_JOIN_S)
            if thread.is_alive():  # still inside one llama.cpp call: freeing its context would crash it
                log.warning("%s still busy %.0f s after close(); leaving its context allocated",
                            thread.name, CLOSE_JOIN_S)
            else:
                llama.close()

    # --- worker threads -------------------------------------------------------------------------

    def _next_request(self, index: int) -> _Request | None:
        with self._cond:
            while not self._closed:
                now, starting = time.monotonic(), self._starting()
                held = [r for r in self._queue if held_back(r.pieces, r.ahead_s(now), starting, self.pause_ahead_s)]
                queue = sorted((r for r in self._queue if r not in held), key=lambda r: (r.pieces, r.queued_at))
                pos = pick_request([(r.prompt, r.options.conversation) for r in queue], index,
                                   self._idle, self._caches)
                if pos is not None:
                    request = queue[pos]
                    self._queue.remove(request)
                    if not request.pieces:
                        self._waits.started(request.queued_at, now)
                    self._idle.discard(index)
                    self._active[index] = request
                    return request
                # a held-back reply may resume once its lead is down to pause_ahead_s, turn or not
                timeout = None
                if held and self.pause_ahead_s is not None:
                    timeout = max(min(r.ahead_s(now) for r in held) - self.pause_ahead_s, 0.01)
                self._cond.wait(timeout)
            return None

    def _starting(self) -> bool:
        """Whether a turn has no speakable piece yet (queued or running): paused replies wait for it."""
        return any(not r.pieces for r in (*self._queue, *self._active.values()))

    def _release(self, index: int, request: _Request, suspended: bool) -> bool:
        """Free the context; queue a suspended request again. False: it was not queued (cancelled
        or closed meanwhile) and its consumer must hear the end now."""
        with self._cond:
            self._idle.add(index)
            self._active.pop(index, None)
            if request.evaluated:
                self._caches[index] = CachedPrompt(request.prompt, request.options.conversation,
                                                   next(self._releases))
            requeued = suspended and not self._closed and not request.cancelled.is_set()
            if requeued:
                request.queued_at = time.monotonic()
                self._queue.append(request)
            self._cond.notify_all()
            return requeued

    def _worker(self, index: int) -> None:
        llama = self._llamas[index]
        while (request := self._next_request(index)) is not None:
            final: tuple[str, Any] = (_ERROR, LlmError("the llama.cpp worker failed"))
            try:
                final = self._serve(llama, request, index)
            finally:
                # free the context (and record the session's home) before the consumer hears the
                # end, so that its next turn finds the context idle
                if not self._release(index, request, final[0] == _SUSPEND):
                    if final[0] == _SUSPEND:
                        final = self._after_cancel(request, index, 0)
                    request.send(*final)

    def _yield_now(self, request: _Request, completed: int) -> bool:
        """Whether the running `request`, which has just completed `completed` pieces, gives its
        context up (should_yield). Its first piece may let held-back replies resume."""
        if not self.interleave:
            return False
        with self._cond:
            if request.pieces == completed:
                self._cond.notify_all()
            if not request.preemptible():
                return False
            waiting = [r.pieces for r in self._queue if not r.cancelled.is_set()]
            return should_yield(request.pieces, waiting, len(self._idle), ahead_s=request.ahead_s(time.monotonic()),
                                starting=self._starting(), pause_ahead_s=self.pause_ahead_s)

    def _render(self, llama: llama_cpp.Llama, request: _Request) -> tuple[list[int], list[int], ChatFormatterResponse]:
        """The rendered prompt's tokens, those of the text already sent (a resumed reply), and the
        rendering (its stop strings and stop tokens)."""
        rendered = self._formatter(messages=request.messages, tools=request.options.tools)
        prompt = llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        sent = request.gate.text
        spoken = llama.tokenize(sent.encode("utf-8"), add_bos=False, special=True) if sent else []
        return prompt, spoken, rendered

    def _serve(self, llama: LazyGrammarLlama, request: _Request, index: int) -> tuple[str, Any]:
        """Stream the reply's deltas to the consumer until it ends or gives its context up; return
        the last item (end, error or _SUSPEND).

        Every failure goes to this consumer only; the worker carries on.
        """
        if request.cancelled.is_set():
            return self._after_cancel(request, index, 0)
        options = request.options
        started = time.monotonic()
        first_ms: float | None = None
        deltas = 0
        stream: Generator[Any, None, None] | None = None
        try:
            self._pick_threads(llama, index)
            prompt, spoken, rendered = self._render(llama, request)
            if request.saved is not None:
                restore_sequence(llama, request.saved)
                request.saved = None
            else:
                self._restore_best(llama, prompt)
            request.evaluated = True
            if spoken and len(spoken) >= options.max_tokens:
                return _END, None
            stop = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
            if log.isEnabledFor(logging.DEBUG):
                cached = shared_prefix(llama.input_ids[:llama.n_tokens], prompt + spoken)
                log.debug("context %d: conversation %s, %d tokens, %d cached, resumed %s", index,
                          request.options.conversation, len(prompt + spoken), cached, bool(spoken))
            stream = cast(Generator[Any, None, None], llama.create_completion(
                prompt=prompt + spoken,
                stream=True,
                max_tokens=options.max_tokens - len(spoken),
                temperature=options.temperature,
                top_p=options.top_p,
                stop=[*options.stop, *stop],
                stopping_criteria=rendered.stopping_criteria,
                seed=options.seed,
                grammar=self._call_grammar(llama, options),
            ))
            for chunk in stream:
                if request.cancelled.is_set():
                    break
                text = chunk["choices"][0]["text"]
                if text:
                    if first_ms is None:
                        first_ms = (time.monotonic() - started) * 1000
                        request.first_sent_at = request.first_sent_at or time.monotonic()
                    deltas += 1
                    request.send(_DELTA, text)
                    speech = request.gate.feed(text)  # a call being written is no speech
                    request.speech += speech
                    completed = len(request.chunker.feed(speech)) if speech else 0
                    request.pieces += completed
                    if completed and self._yield_now(request, completed):
                        stream.close()
                        request.saved = save_sequence(llama)
                        log.debug("context %d: conversation %s suspended after %d pieces, %.1f s ahead", index,
                                  request.options.conversation, request.pieces, request.ahead_s(time.monotonic()))
                        return _SUSPEND, None
                self._pick_threads(llama, index)  # for the next token
        except Exception as exc:  # the worker must survive anything one request does
            log.warning("llama.cpp request failed on context %d: %s", index, exc)
            return _ERROR, LlmError(f"llama.cpp generation failed: {exc}")
        finally:
            if stream is not None:
                stream.close()  # ends the llama.cpp generator now, not at garbage collection
        if not self._closed:  # a cut reply too: the warm-up's are, and what it evaluated is valid
            self._remember(llama, options)
        if request.cancelled.is_set():
            return self._after_cancel(request, index, deltas)
        log.debug("context %d: conversation %s waited %.0f ms, first delta %s ms, %d deltas in %.0f ms",
                  index, request.options.conversation, (started - request.queued_at) * 1000,
                  f"{first_ms:.0f}" if first_ms is not None else "-", deltas, (time.monotonic() - started) * 1000)
        return _END, None

    def _remember(self, llama: llama_cpp.Llama, options: GenerationOptions) -> None:
        if self._store.budget_bytes:
            try:
                self._store.put((options.conversation, bool(options.tools)), save_sequence(llama))
            except RuntimeError as e:  # only a later turn is slower for it
                log.warning("could not keep the reply's sequence: %s", e)

    def _restore_best(self, llama: llama_cpp.Llama, prompt: list[int]) -> None:
        """Put the stored sequence that shares most of `prompt` in the context, when it shares at
        least RESTORE_GAIN tokens more than what the context holds (SequenceStore)."""
        found, saved = self._store.best(prompt)
        if saved is not None and found >= shared_prefix(llama.input_ids[:llama.n_tokens], prompt) + RESTORE_GAIN:
            restore_sequence(llama, saved)

    def _call_grammar(self, llama: LazyGrammarLlama, options: GenerationOptions) -> LlamaGrammar | None:
        """The grammar that keeps calls valid (voice/llm/grammar.py): lazy, or from the first token
        when a call is required; None: no tools offered, or unconstrained. Built once per tool set."""
        if not options.tools or options.callable_tools is None:
            return None
        key = json.dumps([options.tools, options.callable_tools, options.require_call], sort_keys=True)
        if key not in self._grammars:
            try:
                grammar: LlamaGrammar | None = lazy_tool_grammar(llama, options.tools, list(options.callable_tools),
                                                                 eager=options.require_call)
            except ValueError as e:  # unconstrained then: the lenient parser still reads the calls
                log.warning("%s; tool calls are not constrained", e)
                grammar = None
            if len(self._grammars) >= 64:
                self._grammars.clear()
            self._grammars[key] = grammar
        return self._grammars[key]

    def _pick_threads(self, llama: llama_cpp.Llama, index: int) -> None:
        """Threads for the next token, and for the next prompt evaluation: n_threads_batch only
        while no other context works (two contexts evaluating at once would oversubscribe)."""
        generating = len(self._active)
        threads = (pick_threads(self.n_threads, self.n_threads_solo, busy_batchers(), generating),
                   self.n_threads if generating > 1 else self.n_threads_batch)
        if threads != self._threads_in_use[index]:
            llama_cpp.llama_set_n_threads(llama.ctx, *threads)
            self._threads_in_use[index] = threads

    def _after_cancel(self, request: _Request, index: int, deltas: int) -> tuple[str, Any]:
        if self._closed:  # cancelled by close(), not by its consumer, who may still be waiting
            return _ERROR, LlmError("the llama.cpp engine was closed")
        self.last_cancel_release_ms = (time.monotonic() - request.cancelled_at) * 1000
        log.debug("context %d: cancelled after %d deltas, freed %.1f ms after the cancel",
                  index, deltas, self.last_cancel_release_ms)
        return _END, None  # nobody is listening; harmless
