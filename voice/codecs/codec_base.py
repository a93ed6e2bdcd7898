"""What SNAC and DAC decoders share: the `CodecDecoder` protocol, device choice, and the
sliding window that turns a stream of codec frames into decode requests.

A *frame* is the unit a token LM emits in one step group: 7 SNAC codes (85.3 ms at 24 kHz) for
Orpheus, 2 DAC codes (13.3 ms) for OuteTTS. Decoders take equal-length batches of frames and
return audio; streaming is done here, above the model, so batching across streams stays a plain
stack of equally shaped windows.

Nothing here imports torch at module level: the window arithmetic and the device choice are tested on any box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

DeviceSetting = Literal["auto", "cpu", "cuda"]
DtypeSetting = Literal["auto", "float32", "float16", "bfloat16"]


@runtime_checkable
class CodecDecoder(Protocol):
    """Codec frames in, audio out, many streams per call.

    `decode(frames)` takes int64 codes shaped [batch, n_frames, codes_per_frame] (the codec's own
    frame layout, documented by each decoder) and returns float32 audio shaped
    [batch, n_frames * samples_per_frame] in [-1, 1] at `sample_rate_hz`. The caller owns both arrays.
    """

    name: str
    sample_rate_hz: int
    samples_per_frame: int
    codes_per_frame: int
    codebook_size: int
    device: str

    def decode(self, frames: np.ndarray) -> np.ndarray: ...


def choose_device(requested: DeviceSetting, cuda_available: bool) -> Literal["cpu", "cuda"]:
    """The device a decoder runs on. "auto" takes CUDA when present; asking for CUDA without one
    is a configuration error, not a silent fall back to a CPU that cannot keep up."""
    if requested == "cpu":
        return "cpu"
    if requested == "cuda":
        if not cuda_available:
            raise RuntimeError("codec device 'cuda' requested but torch sees no CUDA device")
        return "cuda"
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    raise ValueError(f"unknown device {requested!r} (auto, cpu or cuda)")


def choose_dtype(device: str, requested: DtypeSetting = "auto") -> Literal["float32", "float16", "bfloat16"]:
    """fp16 on CUDA (half the memory traffic, the codecs were trained to tolerate it); fp32 on
    CPU, where half precision convolutions are slower, not faster."""
    if requested == "auto":
        return "float16" if device == "cuda" else "float32"
    if requested != "float32" and device == "cpu":
        raise ValueError(f"dtype {requested} is not supported on CPU for codec decoding")
    return requested


def set_torch_threads(n_threads: int | None) -> None:
    """Intra-op threads for every torch model of the process (a global in torch). On 2 shared cores
    1 thread is the safe choice: 2 threads collapsed 10x under contention (notes/install.md §3)."""
    import torch

    if n_threads is not None and torch.get_num_threads() != n_threads:
        torch.set_num_threads(n_threads)


def fold_weight_norm(model: Any) -> int:
    """Replace weight-norm parametrizations by their computed weights; returns how many."""
    from torch.nn.utils import parametrize

    folded = 0
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            folded += 1
    return folded


def check_codes(frames: np.ndarray, codes_per_frame: int, codebook_size: int) -> np.ndarray:
    """Validate a [batch, n_frames, codes_per_frame] code array; returns it as int64."""
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[2] != codes_per_frame or frames.shape[1] == 0:
        raise ValueError(f"frames must be [batch, n_frames>0, {codes_per_frame}], got {frames.shape}")
    if frames.min() < 0 or frames.max() >= codebook_size:
        raise ValueError(f"codes must be in [0, {codebook_size}), got [{frames.min()}, {frames.max()}]")
    return frames.astype(np.int64, copy=False)


@dataclass(frozen=True)
class WindowPlan:
    """Sliding-window decode: each request decodes `left + hop + right` frames and keeps the audio
    of the `hop` frames in the middle. Context on both sides makes a window's kept audio match a
    one-shot decode of the whole utterance, so joins do not click.

    Orpheus: left 1, hop 1, right 2 = 4 frames (28 tokens), keep samples 2048:4096, i.e. the
    `buffer[-28:]` / `audio_hat[:, :, 2048:4096]` of canopyai Orpheus-TTS orpheus_tts/decoder.py.
    """

    left_frames: int
    hop_frames: int
    right_frames: int

    def __post_init__(self) -> None:
        if self.left_frames < 0 or self.right_frames < 0 or self.hop_frames < 1:
            raise ValueError(f"bad window plan {self}")

    @property
    def window_frames(self) -> int:
        return self.left_frames + self.hop_frames + self.right_frames


@dataclass(frozen=True)
class Window:
    """One decode request: `frames` [n, codes_per_frame] starting at stream frame `start`; keep the
    audio of frames [keep_from, keep_to) of it (indices inside the window). `first` marks a
    stream's first audio (served before bulk requests)."""

    frames: np.ndarray
    start: int
    keep_from: int
    keep_to: int
    first: bool

    @property
    def kept_frames(self) -> int:
        return self.keep_to - self.keep_from


class FrameWindower:
    """Which frames to decode next for one stream, as frames arrive (pure, no model).

    Audio of frame j can be decoded once frames up to j + right have arrived. `take()` returns one
    window covering all audio that became decodable and was not handed out yet, with `left` frames
    of context before it and `right` after it. Taken as soon as ready, every window is exactly
    `window_frames` long (Orpheus: 4 frames, keep 1); taken late, one window covers several hops and
    the context is decoded once instead of once per hop (3-4x cheaper per frame, notes/models.md §4).
    `max_new_frames=hop` forces one hop per window (the reference Orpheus loop).

    The first window starts at frame 0 and keeps everything before its right context: the start of
    an utterance has no left context in a one-shot decode either. So first audio needs
    `window_frames` frames (Orpheus: 28 tokens) and yields `left + hop` frames of audio.
    """

    def __init__(self, plan: WindowPlan, codes_per_frame: int) -> None:
        self.plan = plan
        self._frames = np.zeros((0, codes_per_frame), dtype=np.int64)  # frames from _base on
        self._base = 0      # stream index of self._frames[0]; older frames are never needed again
        self._emitted = 0   # audio up to this stream frame index has been handed out in a window
        self._final = False

    @property
    def n_frames(self) -> int:
        """Frames pushed so far."""
        return self._base + len(self._frames)

    @property
    def emitted_frames(self) -> int:
        """Frames whose audio has been handed out in a window."""
        return self._emitted

    @property
    def done(self) -> bool:
        """`finish()` was called and every frame's audio has been handed out."""
        return self._final and self._emitted >= self.n_frames

    def push(self, frame: np.ndarray) -> None:
        if self._final:
            raise RuntimeError("push after finish")
        self._frames = np.concatenate([self._frames, np.asarray(frame, dtype=np.int64)[None, :]])

    def finish(self) -> None:
        """No more frames: the held-back tail (right context, partial hop) becomes decodable."""
        self._final = True

    def decodable_to(self) -> int:
        """Frame index up to which audio may be decoded now."""
        if self._final:
            return self.n_frames
        if self.n_frames < self.plan.window_frames:
            return 0
        return self.n_frames - self.plan.right_frames

    def ready(self) -> bool:
        """A window is waiting: a full hop of new audio, or any rest after `finish()`."""
        new = self.decodable_to() - self._emitted
        return new > 0 if self._final else new >= self.plan.hop_frames

    def take(self, max_new_frames: int | None = None) -> Window | None:
        """The next window, or None if not `ready()`. `max_new_frames` caps the audio it keeps
        (rounded down to whole hops, at least one hop)."""
        if not self.ready():
            return None
        plan = self.plan
        keep_to = self.decodable_to()
        if not self._final:
            keep_to = self._emitted + (keep_to - self._emitted) // plan.hop_frames * plan.hop_frames
        if max_new_frames is not None:
            cap = max(max_new_frames // plan.hop_frames, 1) * plan.hop_frames
            if self._emitted == 0:  # the first window also keeps its would-be left context
                cap += plan.left_frames
            keep_to = min(keep_to, self._emitted + cap)
        end = min(keep_to + plan.right_frames, self.n_frames)
        start = max(min(self._emitted - plan.left_frames, end - plan.window_frames), 0)
        frames = self._frames[start - self._base:end - self._base].copy()
        window = Window(frames, start, self._emitted - start, keep_to - start, self._emitted == 0)
        self._emitted = keep_to
        drop = max(self._emitted - plan.window_frames, 0) - self._base
        if drop > 0:
            self._frames = self._frames[drop:]
            self._base += drop
        return window
