"""Where the LLM runs: device and GPU layers, which llama.cpp context takes which request, which engine."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from voice.llm.base import GenerationOptions
from voice.llm.llama import (
    CachedPrompt,
    best_context,
    common_prefix_len,
    pick_request,
    pick_threads,
    prompt_text,
    resolve_llm_device,
)
from voice.llm.openai_compat import OpenAICompatEngine
from voice.llm.settings import LlmSettings, build_llm


def test_cpu_offloads_no_layers():
    assert resolve_llm_device("cpu", cuda_available=True) == ("cpu", 0)


def test_cuda_offloads_every_layer_by_default():
    assert resolve_llm_device("cuda", cuda_available=True) == ("cuda", -1)


def test_cuda_keeps_an_explicit_layer_count():
    assert resolve_llm_device("cuda", cuda_available=True, n_gpu_layers=12) == ("cuda", 12)


def test_auto_picks_cuda_when_offload_works():
    assert resolve_llm_device("auto", cuda_available=True) == ("cuda", -1)


def test_auto_falls_back_to_cpu_without_offload():
    assert resolve_llm_device("auto", cuda_available=False) == ("cpu", 0)


def test_auto_without_offload_ignores_a_layer_count():
    assert resolve_llm_device("auto", cuda_available=False, n_gpu_layers=12) == ("cpu", 0)


def test_cuda_without_offload_is_refused():
    with pytest.raises(ValueError, match="GGML_CUDA"):
        resolve_llm_device("cuda", cuda_available=False)


def test_layers_on_explicit_cpu_are_refused():
    with pytest.raises(ValueError, match="n_gpu_layers"):
        resolve_llm_device("cpu", cuda_available=True, n_gpu_layers=8)


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device must be"):
        resolve_llm_device("tpu", cuda_available=False)


# --- pick_request: the oldest request, on the context whose KV cache fits it best -----------------

SYSTEM = {"role": "system", "content": "You are a helpful voice assistant. Answer briefly."}
WEATHER = GenerationOptions(tools=[{"type": "function", "function": {"name": "weather"}}])
CHAT = [{"role": r, "content": f"message {i} of a conversation so far"}
        for i, r in enumerate(["user", "assistant"] * 3)]
PLAIN = prompt_text([SYSTEM, *CHAT], GenerationOptions())
TOOLS = prompt_text([SYSTEM, *CHAT[-1:], {"role": "user", "content": "Rain?"}], WEATHER)
SHORT = prompt_text([SYSTEM, {"role": "user", "content": "Hi"}], GenerationOptions())


def caches(*prompts: str, conversation: str | None = None, used: tuple[int, ...] = ()) -> list[CachedPrompt]:
    used = used or tuple(range(1, len(prompts) + 1))
    return [CachedPrompt(p, conversation if p else None, u) for p, u in zip(prompts, used, strict=True)]


def test_free_worker_takes_the_oldest_request():
    assert pick_request([(PLAIN, None), (TOOLS, None)], worker=0, idle={0}, caches=caches("")) == 0


def test_nothing_queued_means_nothing_to_take():
    assert pick_request([], worker=0, idle={0}, caches=caches("")) is None


def test_a_request_is_left_to_the_idle_context_that_served_its_kind_of_prompt():
    warm = caches(PLAIN, TOOLS, conversation="s1")
    assert pick_request([(TOOLS, "s1")], worker=0, idle={0, 1}, caches=warm) is None
    assert pick_request([(TOOLS, "s1")], worker=1, idle={0, 1}, caches=warm) == 0
    assert pick_request([(TOOLS, "s1"), (PLAIN, "s1")], worker=0, idle={0, 1}, caches=warm) == 1


def test_a_request_whose_best_context_is_busy_is_taken_by_any_free_one():
    assert pick_request([(TOOLS, "s1")], worker=0, idle={0}, caches=caches(PLAIN, TOOLS, conversation="s1")) == 0


def test_the_next_plain_turn_stays_on_the_context_it_extends():
    longer = prompt_text([SYSTEM, *CHAT, {"role": "user", "content": "And then?"}], GenerationOptions())
    assert best_context(longer, "s1", {0, 1}, caches(PLAIN, TOOLS, conversation="s1", used=(1, 2))) == 0


def test_a_tool_round_takes_a_fresh_context_rather_than_evict_its_long_history():
    assert best_context(TOOLS, "s1", {0, 1}, caches(PLAIN, "", conversation="s1")) == 1


def test_a_tool_round_evicts_a_short_history_rather_than_evaluate_the_system_prompt_again():
    assert best_context(TOOLS, "s1", {0, 1}, caches(SHORT, "", conversation="s1")) == 0


def test_a_new_conversation_reuses_a_finished_ones_system_prompt_rather_than_a_fresh_context():
    """Another conversation's history counts nothing when evicted (it may never come back)."""
    assert best_context(SHORT, "s2", {0, 1}, caches(PLAIN, "", conversation="s1")) == 0
    assert best_context(SHORT, None, {0, 1}, caches(PLAIN, "", conversation="s1")) == 1  # unknown: careful


def test_equal_costs_go_to_the_least_recently_used_context():
    assert best_context(SHORT, "s1", {0, 1}, caches("", "", used=(2, 1))) == 1
    assert best_context(SHORT, "s1", {0, 1}, caches("", "", used=(1, 2))) == 0


def test_offered_tools_come_before_the_history_in_the_prompt_text():
    """Chat templates render tools in the system block: a tools prompt must not share the history
    prefix of a plain one with the same messages."""
    assert common_prefix_len(PLAIN, TOOLS) == len(SYSTEM["content"]) + 1
    assert common_prefix_len("abcdef", "abcxyz") == 3 and common_prefix_len("", "a") == 0


# --- settings -> engine ----------------------------------------------------------------------------


def test_openai_engine_needs_a_base_url():
    with pytest.raises(ValidationError, match="base_url"):
        LlmSettings(engine="openai")


def test_openai_settings_build_an_http_engine_with_the_api_model():
    engine = build_llm(LlmSettings(engine="openai", base_url="http://127.0.0.1:8080/v1/", api_model="served"))
    assert isinstance(engine, OpenAICompatEngine)
    assert engine.url == "http://127.0.0.1:8080/v1/chat/completions" and engine.model == "served"


def test_default_system_prompt_asks_for_short_spoken_answers():
    prompt = LlmSettings().system_prompt.lower()
    assert "spoken" in prompt and "markdown" in prompt


# --- pick_threads: more threads only while the LLM has the CPU to itself -------------------------


def test_solo_threads_only_when_nothing_else_runs():
    assert pick_threads(1, 2, busy_batchers=0, generating=1) == 2


def test_base_threads_while_asr_tts_or_codec_work_runs():
    assert pick_threads(1, 2, busy_batchers=1, generating=1) == 1


def test_base_threads_while_another_context_generates():
    assert pick_threads(1, 2, busy_batchers=0, generating=2) == 1


def test_no_solo_setting_keeps_the_base_threads():
    assert pick_threads(3, None, busy_batchers=0, generating=1) == 3
