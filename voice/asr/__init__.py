"""The ears: Silero VAD (vad.py), streaming Whisper ASR with partials (whisper.py, streaming.py), the
per-session Listener (listener.py) and the end-of-turn detector (endpointing.py, smart_turn.py).

Process-wide engines (one model each, own worker thread): `VadEngine`, `WhisperEngine`,
`SmartTurnEngine`. Per session: `Listener(vad_engine, asr_engine, vad_settings, asr_settings)`.
Import what you need from its module: this package imports nothing, so settings stay cheap to load.
"""
