"""The process-wide model engines, built once from settings and shared by every session.

Loading happens in a worker thread (it is blocking file I/O and model setup); each engine then
owns its own worker thread behind an AdaptiveBatcher, so sessions only ever `await` results.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from voice import models
from voice.asr.endpointing import TurnSettings
from voice.asr.smart_turn import SmartTurnEngine
from voice.asr.vad import VadEngine
from voice.asr.whisper import WhisperEngine, resolve_device
from voice.config import Settings
from voice.llm.base import LlmEngine
from voice.llm.settings import build_llm
from voice.tts import build_tts
from voice.tts.base import TtsEngine

log = logging.getLogger(__name__)


@dataclass
class Engines:
    vad: VadEngine
    asr: WhisperEngine
    llm: LlmEngine
    tts: TtsEngine
    turn: SmartTurnEngine | None = None  # None: end of turn by words + silence only

    def close(self) -> None:
        for engine in (self.vad, self.asr, self.llm, self.tts, self.turn):
            if engine is not None:
                engine.close()


def load_engines(settings: Settings) -> Engines:
    """Resolve model settings to files (clear error if missing) and start the engines."""
    t0 = time.monotonic()
    vad_path = models.resolve(settings.vad.model, "vad")
    asr_model = models.resolve(settings.asr.model, "asr")
    log.info("loading models", extra={"vad": str(vad_path), "asr": str(asr_model)})
    vad = VadEngine(vad_path)
    device, default_compute = resolve_device(settings.asr.device, _cuda_available())
    asr = WhisperEngine(
        asr_model, device=device, compute_type=settings.asr.compute_type or default_compute,
        cpu_threads=settings.asr.cpu_threads, beam_size=settings.asr.beam_size, language=settings.asr.language,
    )
    llm = build_llm(settings.llm)
    tts = build_tts(settings.tts)
    turn = load_turn_engine(settings.turn)
    log.info("models loaded", extra={"seconds": round(time.monotonic() - t0, 2), "asr_device": device,
                                     "llm": settings.llm.model, "tts": settings.tts.engine})
    return Engines(vad=vad, asr=asr, llm=llm, tts=tts, turn=turn)


def load_turn_engine(settings: TurnSettings) -> SmartTurnEngine | None:
    """The end-of-turn audio model, or None: the server still runs, ending turns on words + silence."""
    if settings.model is None:
        return None
    try:
        return SmartTurnEngine(models.resolve(settings.model, "turn"))
    except Exception as exc:  # missing package, corrupt file, not an ONNX: one line, no traceback
        hint = "" if isinstance(exc, models.ModelMissing) else " (the default ships in the pipecat-ai wheel)"
        log.warning("end-of-turn audio model unavailable, turns end on words + silence only: %s%s", exc, hint)
        return None


def _cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # a broken CUDA install must not stop a CPU server
        return False
