"""OpenAICompatEngine against the real `python -m llama_cpp.server` serving SmolLM2-135M, plus its parser."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from speech_data import model_path_or_skip

from voice.llm.base import GenerationOptions, LlmEngine
from voice.llm.errors import LlmError
from voice.llm.openai_compat import DONE, OpenAICompatEngine, parse_sse_line, request_body

pytestmark = pytest.mark.timeout(120)

MESSAGES = [{"role": "system", "content": "You are a voice assistant. Answer briefly in plain text."},
            {"role": "user", "content": "Tell me a long story about a dragon and a knight."}]
SHORT = GenerationOptions(max_tokens=24, temperature=0.0)
SERVER_START_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    """Base URL (with /v1) of a real llama.cpp Python server on a free port."""
    pytest.importorskip("llama_cpp.server.app", reason="pip install 'llama-cpp-python[server]'")
    model = model_path_or_skip("smollm2-135m")
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "1024", "--n_threads", "1"],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready in {SERVER_START_S} s:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def collect(engine: OpenAICompatEngine, options: GenerationOptions = SHORT, messages=MESSAGES) -> list[str]:
    return [delta async for delta in engine.stream_chat(messages, options)]


# --- the event-stream parser and the request body -------------------------------------------------


def test_content_delta_is_parsed():
    assert parse_sse_line('data: {"choices": [{"delta": {"content": "Hi"}}]}') == "Hi"


def test_done_ends_the_stream():
    assert parse_sse_line("data: [DONE]") is DONE


@pytest.mark.parametrize("line", ["", ": keep-alive", "event: message",
                                  'data: {"choices": [{"delta": {"role": "assistant"}}]}',
                                  'data: {"choices": []}'])
def test_lines_without_content_yield_nothing(line):
    assert parse_sse_line(line) is None


def test_bad_json_is_an_llm_error():
    with pytest.raises(LlmError, match="bad JSON"):
        parse_sse_line("data: {not json")


def test_error_event_is_an_llm_error():
    with pytest.raises(LlmError, match="out of memory"):
        parse_sse_line('data: {"error": {"message": "out of memory"}}')


def test_request_body_leaves_unset_options_to_the_server():
    body = request_body("m", MESSAGES, GenerationOptions())
    assert body["stream"] is True and "stop" not in body and "seed" not in body and "tools" not in body


def test_engine_implements_the_llm_interface():
    assert isinstance(OpenAICompatEngine("http://127.0.0.1:1/v1", "m"), LlmEngine)


def test_count_tokens_is_about_four_characters_each():
    assert OpenAICompatEngine("http://127.0.0.1:1/v1", "m").count_tokens("x" * 41) == 11


# --- against the real server ----------------------------------------------------------------------


async def test_reply_streams_in_several_deltas(server_url):
    deltas = await collect(OpenAICompatEngine(server_url, "smollm2"))
    assert len(deltas) >= 5 and "".join(deltas).strip()


async def test_cancel_mid_stream_frees_the_server_for_the_next_request(server_url):
    engine = OpenAICompatEngine(server_url, "smollm2")
    stream = engine.stream_chat(MESSAGES, GenerationOptions(max_tokens=600, temperature=0.0))
    async with contextlib.aclosing(stream):
        async for _ in stream:
            break
    started = time.monotonic()
    deltas = await collect(engine, GenerationOptions(max_tokens=4, temperature=0.0))
    assert deltas
    assert time.monotonic() - started < 6.0  # 600 tokens at 1 thread would take 10 s or more


async def test_wrong_url_is_an_llm_error_with_the_status(server_url):
    engine = OpenAICompatEngine(server_url + "/nope", "smollm2")
    with pytest.raises(LlmError, match="HTTP 404"):
        await collect(engine)


async def test_rejected_request_is_an_llm_error_with_a_body_excerpt(server_url):
    engine = OpenAICompatEngine(server_url, "smollm2")
    with pytest.raises(LlmError, match=r"HTTP \d{3}: .*nobody"):
        await collect(engine, messages=[{"role": "nobody", "content": "hi"}])


@pytest.mark.parametrize("messages", ["hello", [{"content": "no role"}], [{"role": "user", "content": object()}]])
async def test_malformed_messages_are_an_llm_error_before_any_request(messages):
    engine = OpenAICompatEngine("http://127.0.0.1:1/v1", "m")
    with pytest.raises(LlmError, match=r"messages|JSON"):
        await collect(engine, messages=messages)


async def test_server_down_is_an_llm_error_quickly():
    engine = OpenAICompatEngine(f"http://127.0.0.1:{free_port()}/v1", "smollm2")
    started = time.monotonic()
    with pytest.raises(LlmError, match="cannot stream"):
        await collect(engine)
    assert time.monotonic() - started < 2.0
