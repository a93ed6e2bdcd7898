"""The ears: Silero VAD, streaming Whisper ASR with partials, and the per-session Listener.

Process-wide engines (one model each, own worker thread): `VadEngine`, `WhisperEngine`.
Per session: `Listener(vad_engine, asr_engine, vad_settings, asr_settings)` -> `events` queue.
"""

from voice.asr.listener import (
    AsrEvent,
    EarlyDropped,
    EarlyTranscript,
    FinalTranscript,
    Listener,
    PartialTranscript,
    SpeechStarted,
    SpeechStopped,
)
from voice.asr.streaming import AsrSettings, GuardSettings, HallucinationGuard, StreamingTranscriber
from voice.asr.vad import SileroVad, VadDetector, VadEngine, VadSettings, VadStream
from voice.asr.whisper import AsrResult, WhisperEngine, resolve_device

__all__ = [
    "AsrEvent",
    "AsrResult",
    "AsrSettings",
    "EarlyDropped",
    "EarlyTranscript",
    "FinalTranscript",
    "GuardSettings",
    "HallucinationGuard",
    "Listener",
    "PartialTranscript",
    "SileroVad",
    "SpeechStarted",
    "SpeechStopped",
    "StreamingTranscriber",
    "VadDetector",
    "VadEngine",
    "VadSettings",
    "VadStream",
    "WhisperEngine",
    "resolve_device",
]
