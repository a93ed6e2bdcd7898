"""Settings and construction of the token-based TTS engines (Orpheus -> SNAC, OuteTTS -> DAC).

`build_token_tts(settings)` returns a ready `TtsEngine`; `token_tts_status(settings)` says what
`voice models check` should report for it. "random" as a model path means a random-weight model of
the real architecture built locally (GGUF written into the cache once; codec built from its
config), which is what tests and benchmarks use: no weights are ever downloaded.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from voice.codecs.codec_base import DeviceSetting, DtypeSetting
from voice.tts.base import TtsEngine

RANDOM = "random"


class TokenTtsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    engine: Literal["orpheus", "outetts"] = "orpheus"
    gguf: str = RANDOM                  # a .gguf path, or "random": random weights, Orpheus/OuteTTS vocabulary
    gguf_real_size: bool = False        # with "random": the real model's shape (GBs, for GPU benchmarks)
    gguf_cache_dir: Path | None = None  # where "random" GGUFs go; None: <VOICE_CACHE_DIR>/models/token-tts
    codec: str = RANDOM                 # SNAC folder (config.json + pytorch_model.bin), DAC folder
                                        # (transformers format), or "random" (real architecture)
    codec_tiny: bool = False            # with codec "random": a narrow DAC, same framing (CPU tests only)
    codec_noise: bool = True            # SNAC's NoiseBlocks as published; False: deterministic decode
    device: DeviceSetting = "cpu"       # codec device; on "cuda" the LLM is fully offloaded too
    dtype: DtypeSetting = "auto"        # codec dtype: auto = fp16 on CUDA, fp32 on CPU
    n_threads: int = Field(1, ge=1)     # torch intra-op and llama.cpp threads (1: 2 shared cores collapse)
    n_gpu_layers: int | None = None     # None: all layers on cuda, none on cpu
    n_ctx: int = Field(2048, ge=256)    # LLM context: prompt + max_tokens must fit
    voice: str = "tara"                 # Orpheus speaker (OuteTTS ignores it)
    max_tokens: int = Field(1200, ge=7)  # per utterance: 1200 Orpheus tokens = 14.6 s of audio
    constrain: bool | None = None       # None: on, except for a real OuteTTS file (needs its word tokens)
    seed: int | None = None             # sampling seed (None: random)
    min_batch_frames: int = Field(8, ge=1)    # codec batch size bounds, in frames
    max_batch_frames: int = Field(64, ge=4)
    batch_window_ms: float = Field(5.0, ge=0)  # how long the codec worker gathers requests
    target_latency_ms: float | None = 150.0    # codec batch latency target (None: always max batch)
    max_window_frames: int = Field(16, ge=4)   # widest coalesced window of one stream, frames


def cache_folder(settings: TokenTtsSettings) -> Path:
    if settings.gguf_cache_dir is not None:
        return settings.gguf_cache_dir
    from voice.models import cache_dir

    return cache_dir() / "token-tts"


def gguf_path(settings: TokenTtsSettings) -> Path:
    """The GGUF file to load; writes the random one on first use."""
    if settings.gguf != RANDOM:
        return Path(settings.gguf).expanduser()
    from voice.tts.gguf_tiny import cached_gguf

    return cached_gguf(settings.engine, cache_folder(settings), real_size=settings.gguf_real_size)


def build_codec(settings: TokenTtsSettings):  # -> SnacDecoder | DacDecoder (imports torch lazily)
    path = None if settings.codec == RANDOM else Path(settings.codec).expanduser()
    common = {"random_weights": path is None, "device": settings.device, "dtype": settings.dtype,
              "n_threads": settings.n_threads}
    if settings.engine == "orpheus":
        from voice.codecs.snac import SnacDecoder

        return SnacDecoder(path, noise=settings.codec_noise, **common)
    from voice.codecs.dac import TINY_DAC, DacDecoder

    return DacDecoder(path, config=TINY_DAC if settings.codec_tiny and path is None else None, **common)


def build_token_tts(settings: TokenTtsSettings) -> TtsEngine:
    """The configured engine, with its process-wide CodecEngine (closed by the engine's close())."""
    from voice.tts.codec_engine import CodecEngine
    from voice.tts.orpheus import OrpheusEngine, SamplingSettings
    from voice.tts.outetts import OUTETTS_SAMPLING, OuteTtsEngine

    model = gguf_path(settings)
    codec = CodecEngine(build_codec(settings), min_batch_frames=settings.min_batch_frames,
                        max_batch_frames=settings.max_batch_frames, window_ms=settings.batch_window_ms,
                        target_latency_ms=settings.target_latency_ms, max_window_frames=settings.max_window_frames)
    gpu_layers = settings.n_gpu_layers
    if gpu_layers is None:
        gpu_layers = -1 if codec.decoder.device == "cuda" else 0
    common = {"n_threads": settings.n_threads, "max_tokens": settings.max_tokens, "n_ctx": settings.n_ctx,
              "n_gpu_layers": gpu_layers, "owns_codec": True}  # closing the engine stops the codec worker
    try:
        if settings.engine == "orpheus":
            sampling = SamplingSettings(seed=settings.seed)
            engine = OrpheusEngine(model, codec, voice=settings.voice, sampling=sampling,
                                   constrain=settings.constrain is not False, **common)
        else:
            sampling = dataclasses.replace(OUTETTS_SAMPLING, seed=settings.seed)
            constrain = settings.constrain if settings.constrain is not None else settings.gguf == RANDOM
            engine = OuteTtsEngine(model, codec, sampling=sampling, constrain=constrain, **common)
    except BaseException:
        codec.close()
        raise
    return engine


def token_tts_status(settings: TokenTtsSettings | None = None) -> list[tuple[str, str, str, str]]:
    """(name, state, path, detail) rows for `voice models check`; state is "ok" or "missing".
    Cheap: checks files and importable packages, loads nothing."""
    s = settings or TokenTtsSettings()
    codec_name, codec_pkg = ("snac-24khz", "snac") if s.engine == "orpheus" else ("dac-24khz", "transformers")
    rows: list[tuple[str, str, str, str]] = []
    missing = [p for p in ("llama_cpp", "torch", codec_pkg) if importlib.util.find_spec(p) is None]
    if missing:
        rows.append((f"{s.engine}-packages", "missing", "", f"pip install {' '.join(missing)}"))
    if s.gguf == RANDOM:
        size = "real" if s.gguf_real_size else "tiny"
        path = cache_folder(s) / f"{s.engine}-random-{size}.gguf"
        detail = "random weights" + ("" if path.exists() else ", written on first use")
        rows.append((f"{s.engine}-lm", "ok", str(path), detail))
    else:
        path = Path(s.gguf).expanduser()
        ok = path.is_file()
        rows.append((f"{s.engine}-lm", "ok" if ok else "missing", str(path),
                     f"{path.stat().st_size / 2**20:.0f} MiB" if ok else "GGUF file not found"))
    if s.codec == RANDOM:
        rows.append((codec_name, "ok", "", "random weights (real architecture)" + (", tiny" if s.codec_tiny else "")))
    else:
        folder = Path(s.codec).expanduser()
        need = ["config.json", "pytorch_model.bin"] if s.engine == "orpheus" else ["config.json"]
        absent = [n for n in need if not (folder / n).is_file()]
        rows.append((codec_name, "missing" if absent else "ok", str(folder),
                     f"missing {', '.join(absent)}" if absent else ""))
    return rows
