"""Text to speech: the engine interface (base.py), text chunking (chunker.py) and the engines.

`build_tts(settings)` is the one place that maps an engine name to its constructor: a new engine
adds one entry to `ENGINE_BUILDERS`. Engines are imported inside their builder, so importing
`voice.tts` does not load ONNX Runtime, torch or llama.cpp.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from voice.errors import ConfigError
from voice.tts.base import TtsEngine
from voice.tts.chunker import ChunkerSettings, TextChunker
from voice.tts.token_settings import TokenTtsSettings

EngineName = Literal["piper", "orpheus", "outetts"]


class TtsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    engine: EngineName = "piper"            # piper: CPU neural voice; orpheus/outetts: codec-token LMs
    model: str = "piper-joe"                # registry name or a path (Piper: the .onnx, config next to it)
    intra_op_threads: int = Field(1, ge=1)  # ONNX Runtime threads per inference
    length_scale: float | None = Field(None, gt=0)  # speaking rate: > 1 slower; None = the voice's own
    chunker: ChunkerSettings = Field(default_factory=ChunkerSettings)
    token: TokenTtsSettings = Field(default_factory=TokenTtsSettings)  # engines orpheus / outetts


def _build_piper(settings: TtsSettings) -> TtsEngine:
    from voice import models
    from voice.tts.piper import PiperEngine

    path = Path(models.resolve(settings.model, "tts"))
    return PiperEngine(path, intra_op_threads=settings.intra_op_threads, length_scale=settings.length_scale)


def _build_token_tts(settings: TtsSettings) -> TtsEngine:
    from voice.tts.token_settings import build_token_tts

    return build_token_tts(settings.token.model_copy(update={"engine": settings.engine}))


#: engine name -> builder: the one place an engine registers.
ENGINE_BUILDERS: dict[str, Callable[[TtsSettings], TtsEngine]] = {
    "piper": _build_piper,
    "orpheus": _build_token_tts,   # Orpheus-style codec tokens -> SNAC 24 kHz
    "outetts": _build_token_tts,   # OuteTTS-style codec tokens -> DAC 24 kHz
}


def build_tts(settings: TtsSettings) -> TtsEngine:
    """The engine `settings` names, loaded and started (blocking: seconds of model loading).
    Raises ConfigError (a ValueError) for an engine that is not available in this build."""
    builder = ENGINE_BUILDERS.get(settings.engine)
    if builder is None:

        available = ", ".join(sorted(ENGINE_BUILDERS))
        raise ConfigError(f"tts.engine: '{settings.engine}' is not available in this build "
                          f"(available: {available})")
    return builder(settings)


__all__ = ["ENGINE_BUILDERS", "ChunkerSettings", "TextChunker", "TtsEngine", "TtsSettings", "build_tts"]
