"""Codec decoding shared by every token-TTS stream: one process-wide `CodecEngine` per codec.

Streams turn LM tokens into codec frames; their decode requests (windows, voice/codecs/codec_base.py)
all go to one worker thread through the project's AdaptiveBatcher, which gathers requests from all
streams for `window_ms`, sizes the batch in frames (`min_batch_frames`..`max_batch_frames`, from its
running latency fit against `target_latency_ms`) and serves first-audio requests before bulk ones.

Where the speed-up comes from differs by device:
- GPU: windows of the same length from different streams are stacked into one batch, one kernel
  launch sequence instead of N;
- CPU (measured, bench/codec.py, 1 thread): stacking loses. SNAC is compute bound, ~95 ms for one
  4-frame window, and 16 stacked windows cost ~225 ms each (activations leave the cache), so on CPU
  each window gets its own call. What wins is coalescing: a `CodecStream` keeps at most one request
  in flight, so frames that arrive while the codec is busy leave as ONE wider window whose context
  is decoded once instead of once per hop (a 4-frame window keeps 1 frame: 4x the work). The busier
  the codec, the wider the windows (up to `max_window_frames`), the cheaper each frame: 2.6x the
  throughput of one window per call at 16 streams, with a third of the p95 latency.
Nothing here runs on the event loop except bookkeeping: decoding happens on the batcher's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import numpy as np

from voice.batching import AdaptiveBatcher, BatcherStats
from voice.codecs.codec_base import CodecDecoder, FrameWindower, Window, WindowPlan

log = logging.getLogger(__name__)


class CodecEngine:
    """One codec model behind an adaptive batcher; `decode(window)` from any session's loop."""

    def __init__(self, decoder: CodecDecoder, *, min_batch_frames: int = 8, max_batch_frames: int = 64,
                 window_ms: float = 5.0, target_latency_ms: float | None = 150.0, max_window_frames: int = 16,
                 stack: bool | None = None, name: str | None = None, warmup_frames: int = 4) -> None:
        """`max_window_frames` caps a coalesced window (CPU cost per frame rises past ~32 frames: the
        activations leave the cache); `stack` puts equal windows in one decoder call (default: on
        CUDA only, see the module docstring)."""
        self.decoder = decoder
        self.stack = decoder.device != "cpu" if stack is None else stack
        self.max_window_frames = max_window_frames
        if warmup_frames:  # the first call pays for lazy init (allocator, kernels): not the first user
            decoder.decode(np.zeros((1, warmup_frames, decoder.codes_per_frame), dtype=np.int64))
        self.sample_rate_hz = decoder.sample_rate_hz
        self.max_batch_frames = max_batch_frames
        self._batcher: AdaptiveBatcher[Window, np.ndarray] = AdaptiveBatcher(
            self._decode_batch, name=name or f"codec-{decoder.name}", window_ms=window_ms,
            min_batch=min_batch_frames, max_batch=max_batch_frames, target_latency_ms=target_latency_ms,
            cost=lambda w: len(w.frames))

    async def decode(self, window: Window) -> np.ndarray:
        """The kept audio of `window`, float32 at `sample_rate_hz`; first windows go first."""
        return await self._batcher.submit(window, urgent=window.first)

    def stats(self) -> BatcherStats:
        return self._batcher.stats()

    def close(self) -> None:
        self._batcher.close()

    def _decode_batch(self, windows: list[Window]) -> list[np.ndarray | BaseException]:
        """Worker thread: one decoder call per window length (stacked) or per window; results in
        request order."""
        spf = self.decoder.samples_per_frame
        results: list[np.ndarray | BaseException] = [RuntimeError("not decoded")] * len(windows)
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(len(w.frames) if self.stack else i, []).append(i)
        for indices in groups.values():
            try:
                audio = self.decoder.decode(np.stack([windows[i].frames for i in indices]))
            except Exception as exc:  # a bad group fails its own requests only
                log.warning("codec decode of %d windows failed: %r", len(indices), exc)
                for i in indices:
                    results[i] = exc
                continue
            for row, i in enumerate(indices):
                w = windows[i]
                results[i] = np.ascontiguousarray(audio[row, w.keep_from * spf:w.keep_to * spf])
        return results


class CodecStream:
    """One utterance: frames in (on the event loop), audio chunks out in order.

    At most one decode request is in flight; frames arriving meanwhile wait and leave together in the
    next, wider window (`coalesce=True`, capped at the engine's max batch). `coalesce=False` sends one
    window per hop, as the reference Orpheus loop does (the benchmark's per-stream baseline).
    """

    def __init__(self, engine: CodecEngine, plan: WindowPlan, *, coalesce: bool = True) -> None:
        self.engine = engine
        self._windower = FrameWindower(plan, engine.decoder.codes_per_frame)
        if coalesce:
            widest = min(engine.max_window_frames, engine.max_batch_frames)
            self._max_new = max(widest - plan.left_frames - plan.right_frames, plan.hop_frames)
        else:
            self._max_new = plan.hop_frames
        self._chunks: asyncio.Queue[np.ndarray | BaseException | None] = asyncio.Queue()
        self._in_flight: asyncio.Future[np.ndarray] | None = None
        self._closed = False
        self.requests = 0

    @property
    def frames_in(self) -> int:
        return self._windower.n_frames

    def push(self, frame: np.ndarray) -> None:
        """One codec frame [codes_per_frame]; may start a decode request."""
        self._windower.push(frame)
        self._pump()

    def finish(self) -> None:
        """No more frames: decode the held-back tail, then end `chunks()`."""
        self._windower.finish()
        self._pump()

    def fail(self, exc: BaseException) -> None:
        """End `chunks()` with `exc` (the token side failed)."""
        self._close_with(exc)

    def cancel(self) -> None:
        """Drop pending work (barge-in): the in-flight request is abandoned, `chunks()` ends."""
        self._close_with(None)
        if self._in_flight is not None:
            self._in_flight.cancel()

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        """Audio chunks in order until the stream finishes; raises what failed it."""
        while (item := await self._chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _pump(self) -> None:
        if self._closed or self._in_flight is not None:
            return
        window = self._windower.take(self._max_new)
        if window is None:
            if self._windower.done:
                self._close_with(None)
            return
        self.requests += 1
        self._in_flight = asyncio.ensure_future(self.engine.decode(window))
        self._in_flight.add_done_callback(self._on_decoded)

    def _on_decoded(self, future: asyncio.Future[np.ndarray]) -> None:
        self._in_flight = None
        if future.cancelled() or self._closed:
            return
        exc = future.exception()
        if exc is not None:
            self._close_with(exc)
            return
        self._chunks.put_nowait(future.result())
        self._pump()

    def _close_with(self, item: BaseException | None) -> None:
        if not self._closed:
            self._closed = True
            self._chunks.put_nowait(item)


async def stream_audio(tokens: AsyncIterator[int], to_frames: Callable[[int], np.ndarray | None],
                       stream: CodecStream) -> AsyncIterator[np.ndarray]:
    """Token ids -> frames -> audio chunks, with token parsing and decoding overlapped.

    A producer task feeds `stream` from `tokens` while this generator yields decoded chunks. Closing
    the generator (consumer stopped: barge-in) cancels the producer, which closes `tokens` (the LM
    stops at its next token) and abandons pending decodes.
    """

    async def produce() -> None:
        try:
            async for token in tokens:
                frame = to_frames(token)
                if frame is not None:
                    stream.push(frame)
            stream.finish()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.fail(exc)
        finally:
            with contextlib.suppress(Exception):
                await tokens.aclose()  # type: ignore[attr-defined]

    producer = asyncio.create_task(produce())
    try:
        async for chunk in stream.chunks():
            yield chunk
    finally:
        stream.cancel()
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer
