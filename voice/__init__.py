"""voice: a real-time voice agent server (VAD, streaming ASR, LLM with tools, token-based TTS)."""

__version__ = "0.1.0"
