"""LLM engines: the interface, the in-process llama.cpp engine, the OpenAI-compatible HTTP engine.

The engine modules are imported on first use, so that reading the settings does not load llama.cpp
or httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voice.llm.base import GenerationOptions, LlmEngine
from voice.llm.errors import LlmError
from voice.llm.settings import DEFAULT_SYSTEM_PROMPT, LlmSettings, build_llm

if TYPE_CHECKING:
    from voice.llm.llama import LlamaCppEngine, resolve_llm_device
    from voice.llm.openai_compat import OpenAICompatEngine

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "GenerationOptions",
    "LlamaCppEngine",
    "LlmEngine",
    "LlmError",
    "LlmSettings",
    "OpenAICompatEngine",
    "build_llm",
    "resolve_llm_device",
]

_LAZY = {
    "LlamaCppEngine": "voice.llm.llama",
    "resolve_llm_device": "voice.llm.llama",
    "OpenAICompatEngine": "voice.llm.openai_compat",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'voice.llm' has no attribute {name!r}")
