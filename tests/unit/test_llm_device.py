"""Where the LLM runs: device and GPU layers, which llama.cpp context takes which request, which engine."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from voice.llm.llama import pick_request, pick_threads, resolve_llm_device
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


# --- pick_request: FIFO with session affinity --------------------------------------------------


def test_free_worker_takes_the_oldest_request():
    assert pick_request([None, None], worker=0, idle={0}) == 0


def test_nothing_queued_means_nothing_to_take():
    assert pick_request([], worker=0, idle={0}) is None


def test_request_goes_back_to_its_home_worker():
    assert pick_request([1, None], worker=1, idle={0, 1}) == 0


def test_request_is_left_for_its_idle_home_worker():
    assert pick_request([1, None], worker=0, idle={0, 1}) == 1


def test_request_whose_home_is_busy_is_taken_by_any_free_worker():
    assert pick_request([1], worker=0, idle={0}) == 0


def test_worker_waits_when_every_request_belongs_to_another_idle_worker():
    assert pick_request([1, 1], worker=0, idle={0, 1}) is None


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
