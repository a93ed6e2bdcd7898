"""LLM settings (the `[llm]` section of the config) and the factory that builds the engine."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from voice.llm.base import GenerationOptions, LlmEngine

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Everything you write is spoken aloud, so answer in one to "
    "three short sentences unless the user asks for more. Use plain spoken language: no markdown, "
    "lists, headings, code, emoji or symbols. Write numbers and units as they are said. If the "
    "request is unclear, ask one short question."
)


class LlmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    engine: Literal["llama", "openai"] = "llama"  # in-process llama.cpp, or an OpenAI-compatible server
    model: str = "qwen2.5-coder-0.5b"       # registry name or a GGUF path (engine "llama")
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    n_ctx: int = Field(4096, ge=256)        # tokens per context: system prompt + history + reply
    n_threads: int = Field(2, ge=1)         # CPU threads per context; 1 while ASR/TTS share 2 cores
    n_threads_batch: int | None = Field(None, ge=1)  # threads for prompt evaluation (None: n_threads);
                                            # nothing else runs then, so it can use every core
    n_threads_solo: int | None = Field(None, ge=1)  # threads while generating with no ASR/TTS/codec
                                            # work running (None: n_threads); chosen per token
    contexts: int = Field(1, ge=1)          # llama.cpp contexts: KV caches routed by prompt prefix,
                                            # and replies generated at once
    interleave: bool = True                 # engine "llama": a reply gives its context to a waiting
                                            # turn after each speakable piece (voice/llm/llama.py)
    pause_ahead_s: float | None = Field(3.0, gt=0)  # engine "llama", interleave: a reply with more speech
                                            # than this sent ahead pauses while another turn starts
    kv_store_mb: int = Field(256, ge=0)     # engine "llama": finished replies' KV kept so any context
                                            # continues any conversation without re-evaluating it
    base_url: str | None = None             # engine "openai": e.g. http://127.0.0.1:8080/v1
    api_model: str | None = None            # engine "openai": model name sent; None = `model`
    api_key: str | None = None              # engine "openai": bearer token, if the server wants one
    timeout_s: float = Field(30.0, gt=0)    # engine "openai": longest wait for the next chunk, s
    max_tokens: int = Field(160, ge=1)      # reply length cap, tokens (~120 spoken words)
    temperature: float = Field(0.7, ge=0, le=2)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    @model_validator(mode="after")
    def _openai_needs_url(self) -> LlmSettings:
        if self.engine == "openai" and not self.base_url:
            raise ValueError("llm.engine 'openai' requires llm.base_url (e.g. http://127.0.0.1:8080/v1)")
        return self

    def generation_options(self) -> GenerationOptions:
        return GenerationOptions(max_tokens=self.max_tokens, temperature=self.temperature)


def build_llm(settings: LlmSettings) -> LlmEngine:
    """The engine these settings describe; loads the model now (engine "llama")."""
    if settings.engine == "openai":
        from voice.llm.openai_compat import OpenAICompatEngine

        assert settings.base_url is not None  # checked by the validator
        return OpenAICompatEngine(settings.base_url, settings.api_model or settings.model,
                                  api_key=settings.api_key, timeout_s=settings.timeout_s)
    from voice.llm.llama import LlamaCppEngine
    from voice.models import resolve

    path = resolve(settings.model, "llm")
    if isinstance(path, str):
        raise ValueError(f"llm.model {settings.model!r}: hub downloads are not supported for GGUF models; "
                         "download the .gguf file and give its path")
    return LlamaCppEngine(path, n_ctx=settings.n_ctx, n_threads=settings.n_threads,
                          n_threads_batch=settings.n_threads_batch, n_threads_solo=settings.n_threads_solo,
                          device=settings.device, contexts=settings.contexts, interleave=settings.interleave,
                          pause_ahead_s=settings.pause_ahead_s, kv_store_mb=settings.kv_store_mb)
