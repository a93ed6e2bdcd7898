"""LlamaCppEngine with the real models: SmolLM2-135M for the mechanics, Qwen2.5-Coder-0.5B for answers.

Every engine here uses one thread per context: the machine has 2 cores shared with other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, replace

import pytest
from speech_data import model_path_or_skip

from voice.llm.base import GenerationOptions, LlmEngine
from voice.llm.errors import LlmError
from voice.llm.llama import LlamaCppEngine, _Request, held_back, should_yield, speech_ahead_s

pytestmark = pytest.mark.timeout(180)

SYSTEM = {"role": "system", "content": "You are a voice assistant. Answer briefly in plain text."}
STORY = [SYSTEM, {"role": "user", "content": "Tell me a long story about a dragon and a knight."}]
GREEDY = GenerationOptions(max_tokens=24, temperature=0.0)


@dataclass
class Reply:
    deltas: list[str]
    first_delta_s: float  # time.monotonic() of the first delta
    end_s: float

    @property
    def text(self) -> str:
        return "".join(self.deltas)


async def collect(engine: LlamaCppEngine, messages, options: GenerationOptions = GREEDY) -> Reply:
    deltas: list[str] = []
    first = 0.0
    async for delta in engine.stream_chat(messages, options):
        first = first or time.monotonic()
        deltas.append(delta)
    return Reply(deltas, first, time.monotonic())


@pytest.fixture(scope="module")
def smol():
    engine = LlamaCppEngine(model_path_or_skip("smollm2-135m"), n_ctx=1024, n_threads=1)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def qwen():
    engine = LlamaCppEngine(model_path_or_skip("qwen2.5-coder-0.5b"), n_ctx=2048, n_threads=1)
    yield engine
    engine.close()


async def test_reply_streams_in_several_deltas(smol):
    reply = await collect(smol, STORY)
    assert len(reply.deltas) >= 5
    assert reply.text.strip()


async def test_qwen_says_paris_is_the_capital_of_france(qwen):
    messages = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]
    reply = await collect(qwen, messages)
    assert "paris" in reply.text.lower()


async def test_tools_are_rendered_by_the_gguf_template(qwen):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "system", "content": "You are a voice assistant. Call a tool only when the user asks "
                 "for something a tool can do; otherwise answer briefly in plain text."},
                {"role": "user", "content": "What's the weather in Berlin?"}]
    reply = await collect(qwen, messages, GenerationOptions(max_tokens=40, temperature=0.0, tools=tools))
    assert "get_weather" in reply.text and "Berlin" in reply.text


WEATHER_AND_REMINDER = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather forecast for a city, today or tomorrow",
        "parameters": {"type": "object", "required": ["city"], "properties": {
            "city": {"type": "string"}, "day": {"type": "string", "enum": ["today", "tomorrow"]}}}}},
    {"type": "function", "function": {
        "name": "add_reminder", "description": "Save a reminder",
        "parameters": {"type": "object", "required": ["text", "time"], "properties": {
            "text": {"type": "string"}, "time": {"type": "string"}}}}},
]
TOOL_SYSTEM = {"role": "system", "content": "You are a friendly voice assistant. Use a tool when the user asks "
               "about the weather or about reminders. Answer everything else yourself."}


async def test_a_constrained_call_is_valid_json_naming_an_allowed_tool(qwen):
    options = GenerationOptions(max_tokens=60, temperature=0.0, tools=WEATHER_AND_REMINDER,
                                callable_tools=("get_weather",))
    reply = await collect(qwen, [TOOL_SYSTEM, {"role": "user", "content": "Will it rain in Paris tomorrow?"}],
                          options)
    body = reply.text.replace("<tool_call>", "").replace("</tool_call>", "").strip()
    call = json.loads(body)  # the whole reply is one call: nothing after it, nothing malformed
    assert call["name"] == "get_weather" and call["arguments"]["day"] in ("today", "tomorrow")


async def test_a_required_call_keeps_to_the_allowed_tools_even_when_the_model_wants_another(qwen):
    # require_call: the grammar from the first token (the lazy one waits for a <tool_call> token,
    # and Qwen 0.5B writes this call as bare JSON)
    options = GenerationOptions(max_tokens=60, temperature=0.0, tools=WEATHER_AND_REMINDER,
                                callable_tools=("get_weather",), require_call=True)
    messages = [TOOL_SYSTEM, {"role": "user", "content": "Remind me to call my sister at 6 pm."}]
    free = await collect(qwen, messages, replace(options, callable_tools=None, require_call=False))
    assert "add_reminder" in free.text  # what it writes unconstrained
    constrained = await collect(qwen, messages, options)
    assert "add_reminder" not in constrained.text and "get_weather" in constrained.text


async def test_the_grammars_of_the_shipped_tools_parse_in_llama_cpp(qwen, tmp_path):
    from voice.agents import assistant, booking
    from voice.agents.store import BookingStore, ReminderStore
    from voice.llm.grammar import lazy_tool_grammar

    tools = [assistant.get_weather, *assistant.reminder_tools(ReminderStore(tmp_path / "r.sqlite3"), "u"),
             *booking.booking_tools(BookingStore(tmp_path / "b.sqlite3"), "s")]
    schemas = [t.schema() for t in tools]
    grammar = lazy_tool_grammar(qwen._llamas[0], schemas, [t.name for t in tools])  # raises if unparsable
    assert grammar.tokens and not grammar.patterns  # only the <tool_call> token triggers: crash-safe


def test_no_first_token_can_trigger_the_lazy_grammar_into_a_crash():
    """llama.cpp aborts the process when a trigger feeds the grammar text it rejects: run in a child."""
    import subprocess
    import sys

    script = """
import sys
from voice.agents import assistant
from voice.llm.grammar import LazyGrammarLlama, lazy_tool_grammar
llama = LazyGrammarLlama(sys.argv[1], n_ctx=256, verbose=False, vocab_only=True)
g = lazy_tool_grammar(llama, [assistant.get_weather.schema()], ["get_weather"])
import ctypes, llama_cpp
tokens = (llama_cpp.llama_token * len(g.tokens))(*g.tokens)
s = llama_cpp.llama_sampler_init_grammar_lazy_patterns(llama._model.vocab, g._grammar.encode(), b"root",
                                                       (ctypes.c_char_p * 0)(), 0, tokens, len(g.tokens))
for text in ["{{", "{\\n", "{", '{"response', "Hello {", "```json"]:
    for token in llama.tokenize(text.encode(), add_bos=False, special=False):
        llama_cpp.llama_sampler_accept(s, token)
print("survived")
"""
    done = subprocess.run([sys.executable, "-c", script, str(model_path_or_skip("qwen2.5-coder-0.5b"))],
                          capture_output=True, text=True, timeout=120)
    assert "survived" in done.stdout, done.stderr[-2000:]


async def test_prose_is_not_constrained_by_a_tool_grammar(qwen, tmp_path):
    from voice.agents import assistant
    from voice.agents.store import ReminderStore
    from voice.llm.flows import load_flow

    spec = load_flow(assistant.FLOW)  # the assistant's own tool-round prompt and tools
    system = {"role": "system", "content": f"{spec.tool_identity}\nRules:\n- {spec.tool_rules[0]}"}
    tools = [t.schema() for t in [assistant.get_weather,
                                  *assistant.reminder_tools(ReminderStore(tmp_path / "r.sqlite3"), "u")]]
    options = GenerationOptions(max_tokens=24, temperature=0.0, tools=tools,
                                callable_tools=tuple(t["function"]["name"] for t in tools))
    messages = [system, {"role": "user", "content": "Tell me a joke about cats."}]
    constrained = await collect(qwen, messages, options)
    # prose, as without the grammar (not compared token for token: a prompt served from the KV cache
    # may be evaluated in another batch shape, and greedy picks can differ by float rounding)
    assert constrained.text.strip() and "{" not in constrained.text and "tool_call" not in constrained.text


async def test_cancel_after_first_delta_frees_the_context(smol):
    stream = smol.stream_chat(STORY, GenerationOptions(max_tokens=400, temperature=0.0))
    async with contextlib.aclosing(stream):
        async for _ in stream:
            break
    started = time.monotonic()
    reply = await collect(smol, [SYSTEM, {"role": "user", "content": "Say hello."}],
                          GenerationOptions(max_tokens=8, temperature=0.0))
    assert reply.deltas
    assert time.monotonic() - started < 5.0  # 400 tokens would take 8 s or more at 1 thread
    assert smol.last_cancel_release_ms is not None and smol.last_cancel_release_ms < 1000


async def test_task_cancellation_frees_the_context(smol):
    first = asyncio.Event()

    async def consume():
        async for _ in smol.stream_chat(STORY, GenerationOptions(max_tokens=400, temperature=0.0)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    reply = await asyncio.wait_for(collect(smol, STORY, GenerationOptions(max_tokens=4)), 5.0)
    assert reply.deltas


async def test_without_interleaving_one_context_serves_two_sessions_in_turn(smol):
    smol.interleave = False
    try:
        a, b = await asyncio.gather(collect(smol, STORY), collect(smol, STORY))
    finally:
        smol.interleave = True
    assert a.deltas and b.deltas
    later, earlier = (b, a) if b.first_delta_s > a.first_delta_s else (a, b)
    assert later.first_delta_s >= earlier.end_s  # FIFO: one reply at a time


async def test_a_reply_gives_its_context_to_a_new_turn_after_a_piece_and_resumes_unchanged(qwen):
    """One context, two callers: the second's first words come before the first reply ends (it
    gives the context up after a speakable piece), and the first reply, suspended and resumed,
    says word for word what it says alone (greedy): its sequence was saved and continued."""
    long = GenerationOptions(max_tokens=60, temperature=0.0)
    # the reference reply finds its prompt cached, as the interleaved one will: evaluated in one
    # batch, the prompt's last token has other rounding than evaluated alone, and greedy text drifts
    await collect(qwen, STORY, long)
    alone = await collect(qwen, STORY, long)
    question = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]

    async def ask_once_the_story_has_a_piece() -> Reply:
        while not qwen._active or not qwen._active[0].pieces:
            await asyncio.sleep(0.01)
        return await collect(qwen, question)
    story, answer = await asyncio.gather(collect(qwen, STORY, long), ask_once_the_story_has_a_piece())
    assert story.text == alone.text
    assert answer.first_delta_s < story.end_s
    assert "paris" in answer.text.lower()


async def test_a_reply_that_leaves_while_suspended_is_dropped_and_the_engine_goes_on(smol):
    """The caller hangs up while its reply waits, suspended, for the context: the reply leaves
    the queue, the request that took the context finishes, and the next one is served."""
    async def story_until_suspended() -> None:
        async for _ in smol.stream_chat(STORY, GenerationOptions(max_tokens=200, temperature=0.0)):
            pass

    story = asyncio.create_task(story_until_suspended())
    while not smol._active or not smol._active[0].pieces:
        await asyncio.sleep(0.01)
    other = asyncio.create_task(collect(smol, STORY, GenerationOptions(max_tokens=60, temperature=0.0)))
    while not any(r.pieces for r in smol._queue):  # the story gave the context up
        await asyncio.sleep(0.01)
    story.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await story
    assert not smol._queue
    assert (await asyncio.wait_for(other, 30)).text
    assert (await collect(smol, [SYSTEM, {"role": "user", "content": "Say hello."}])).deltas


async def test_a_call_keeps_its_context():
    """A reply the agent holds back (a call being written, tagged or bare JSON) or one that must be
    a call never gives its context up: its caller waits for the call, and it is no speech."""
    def request(text: str, require_call: bool = False) -> _Request:
        r = _Request([SYSTEM], GenerationOptions(require_call=require_call), "", asyncio.get_running_loop())
        r.gate.feed(text)
        return r
    assert request("Sure, let me check.").preemptible()
    assert not request("Sure. <tool_call>\n{\"name\"").preemptible()
    assert not request('{"name": "set_reminder", "arguments": {"text": ').preemptible()
    assert not request("", require_call=True).preemptible()


def test_a_reply_yields_only_while_every_context_is_busy_and_to_one_no_further_ahead():
    assert should_yield(1, [0], idle_contexts=0)  # a new turn's first piece goes first
    assert should_yield(2, [2], idle_contexts=0)  # replies being spoken take turns
    assert not should_yield(1, [2], idle_contexts=0)  # the waiting one is further ahead
    assert not should_yield(3, [0], idle_contexts=1)  # an idle context takes the new turn
    assert not should_yield(3, [], idle_contexts=0)


def test_a_reply_far_ahead_of_its_speech_pauses_while_another_turn_starts():
    assert speech_ahead_s(30, first_sent_at=100.0, now=102.0) == 8.0  # 30 words = 10 s, 2 s spoken
    assert speech_ahead_s(30, first_sent_at=None, now=102.0) == 0.0
    pause = {"pause_ahead_s": 3.0}
    assert should_yield(4, [], idle_contexts=1, ahead_s=8.0, starting=True, **pause)
    assert not should_yield(4, [], idle_contexts=1, ahead_s=2.0, starting=True, **pause)  # would be heard
    assert not should_yield(4, [], idle_contexts=1, ahead_s=8.0, starting=False, **pause)  # no one starts
    assert not should_yield(4, [], idle_contexts=1, ahead_s=8.0, starting=True, pause_ahead_s=None)
    assert held_back(4, 8.0, starting=True, pause_ahead_s=3.0)
    assert not held_back(4, 2.5, starting=True, pause_ahead_s=3.0)  # resumes before its lead is spoken
    assert not held_back(4, 8.0, starting=False, pause_ahead_s=3.0)
    assert not held_back(0, 8.0, starting=True, pause_ahead_s=3.0)  # a turn that has not started


async def test_a_reply_far_ahead_pauses_on_a_free_context_while_a_new_turn_starts():
    """Two contexts, so the new turn never waits for one: the story still pauses (its caller has
    seconds of speech queued) while the question's long prompt is evaluated and its first piece
    generated, then ends word for word as it does alone."""
    engine = LlamaCppEngine(model_path_or_skip("smollm2-135m"), n_ctx=1024, n_threads=1, contexts=2)
    try:
        long = GenerationOptions(max_tokens=160, temperature=0.0)
        await collect(engine, STORY, long)
        alone = await collect(engine, STORY, long)
        paused_during_question = False

        async def ask_once_far_ahead() -> Reply:
            nonlocal paused_during_question
            while not any(r.ahead_s(time.monotonic()) > 5 for r in engine._active.values()):
                await asyncio.sleep(0.01)
            notes = " ".join(f"Note {i}: the meeting room is on floor {i % 7}." for i in range(60))
            question = asyncio.create_task(collect(engine, [SYSTEM, {"role": "user", "content": notes},
                                                            {"role": "user", "content": "Say hello."}]))
            while not question.done():
                paused_during_question |= any(r.pieces for r in engine._queue)
                await asyncio.sleep(0.005)
            return await question
        story, answer = await asyncio.gather(collect(engine, STORY, long), ask_once_far_ahead())
    finally:
        engine.close()
    assert paused_during_question
    assert answer.deltas and answer.end_s < story.end_s
    assert story.text == alone.text


async def test_two_contexts_serve_two_sessions_at_once():
    engine = LlamaCppEngine(model_path_or_skip("smollm2-135m"), n_ctx=1024, n_threads=1, contexts=2)
    try:
        options = GenerationOptions(max_tokens=48, temperature=0.0)
        a, b = await asyncio.gather(collect(engine, STORY, options), collect(engine, STORY, options))
    finally:
        engine.close()
    assert a.deltas and b.deltas
    assert a.first_delta_s < b.end_s and b.first_delta_s < a.end_s  # the replies overlap


async def test_a_second_context_keeps_the_plain_prompt_warm_across_a_tool_round():
    """Tools change the system block, so with one context the plain turn after a tool round
    evaluates its whole prompt again; with two, the tool round goes to the other context and the
    plain turn evaluates only its new messages. Same requests on both engines, counted by llama.cpp.
    (With the sequence store, on by default, one context does as well: the next test.)
    The requests are shaped like the agent's: the tool round sees only the latest messages."""
    weather = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    chat = [SYSTEM]
    for question, answer in [("What is the capital of France?", "The capital of France is Paris."),
                             ("What is it famous for?", "Paris is famous for the Eiffel Tower, the Louvre "
                              "museum, its cafes and its long history of art and fashion."),
                             ("How many people live there?", "About two million people live in the city "
                              "itself, and more than twelve million in the wider region.")]:
        chat += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    ask_rain = {"role": "user", "content": "Is it raining in Paris now?"}
    tool_round = [SYSTEM, chat[-1], ask_rain]
    after = [*chat, ask_rain, {"role": "assistant", "content": "No, it is sunny."},
             {"role": "user", "content": "Thanks!"}]
    plain = replace(GREEDY, max_tokens=4, conversation="s1")
    tools = replace(plain, tools=weather)
    evaluated = {}
    for contexts in (1, 2):
        engine = LlamaCppEngine(model_path_or_skip("qwen2.5-coder-0.5b"), n_ctx=2048, n_threads=1,
                                contexts=contexts, kv_store_mb=0)  # the routing alone
        try:
            await collect(engine, chat, plain)
            await collect(engine, tool_round, tools)
            before = engine.prompt_tokens_evaluated()
            await collect(engine, after, plain)
            evaluated[contexts] = engine.prompt_tokens_evaluated() - before
        finally:
            engine.close()
    assert 0 < evaluated[2] < evaluated[1] / 2, evaluated


async def test_a_conversation_continues_on_a_context_another_one_used_without_evaluating_its_history():
    """One context: caller A talks, caller B's tool round takes the context, A's next turn finds
    its history in the sequence store (restored, a memcpy) and evaluates only the new messages.
    The baseline, same requests: the store off (A's history evaluated again)."""
    weather = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    chat = [SYSTEM, {"role": "user", "content": "What is Paris famous for?"},
            {"role": "assistant", "content": "Paris is famous for the Eiffel Tower, the Louvre museum, its cafes "
             "and its long history of art and fashion."}]
    more = [*chat, {"role": "user", "content": "And Rome?"}]
    other = [SYSTEM, {"role": "user", "content": "Is it raining in Oslo now?"}]
    evaluated = {}
    for store_mb in (256, 0):
        engine = LlamaCppEngine(model_path_or_skip("qwen2.5-coder-0.5b"), n_ctx=2048, n_threads=1,
                                kv_store_mb=store_mb)
        try:
            await collect(engine, chat, replace(GREEDY, max_tokens=4, conversation="a"))
            await collect(engine, other, replace(GREEDY, max_tokens=4, conversation="b", tools=weather))
            before = engine.prompt_tokens_evaluated()
            reply = await collect(engine, more, replace(GREEDY, max_tokens=4, conversation="a"))
            evaluated[store_mb] = engine.prompt_tokens_evaluated() - before
        finally:
            engine.close()
        assert reply.deltas
    assert 0 < evaluated[256] < evaluated[0] / 2, evaluated


async def test_prompt_longer_than_the_context_is_an_llm_error_and_the_engine_survives():
    engine = LlamaCppEngine(model_path_or_skip("smollm2-135m"), n_ctx=256, n_threads=1)
    try:
        huge = [SYSTEM, {"role": "user", "content": "dragon " * 600}]
        with pytest.raises(LlmError, match="context window"):
            await collect(engine, huge)
        reply = await collect(engine, [SYSTEM, {"role": "user", "content": "Say hello."}])
    finally:
        engine.close()
    assert reply.deltas


@pytest.mark.parametrize("messages", ["hello", [], ["hello"], [{"content": "no role"}]])
async def test_malformed_messages_are_an_llm_error(smol, messages):
    with pytest.raises(LlmError, match="messages"):
        await collect(smol, messages)


def test_engine_implements_the_llm_interface(smol):
    assert isinstance(smol, LlmEngine)


def test_count_tokens_uses_the_model_tokenizer(smol):
    assert smol.count_tokens("Hello world, how are you?") == 7
    assert smol.count_tokens("") == 0


async def test_closed_engine_refuses_requests():
    engine = LlamaCppEngine(model_path_or_skip("smollm2-135m"), n_ctx=256, n_threads=1)
    engine.close()
    with pytest.raises(LlmError, match="closed"):
        await collect(engine, STORY)


async def test_solo_threads_are_used_only_while_no_other_model_work_runs():
    """n_threads_solo: llama_set_n_threads per token, by the process-wide busy count."""
    from voice.batching import AdaptiveBatcher

    engine = LlamaCppEngine(model_path_or_skip("smollm2-135m"), n_ctx=512, n_threads=1, n_threads_solo=2)
    holding, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def busy(items):  # stands for a Whisper/Piper batch running on its worker thread
        loop.call_soon_threadsafe(holding.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
        return items

    other = AdaptiveBatcher(busy, name="other-model")
    try:
        await collect(engine, STORY)
        alone = list(engine._threads_in_use)
        job = asyncio.ensure_future(other.submit(1))
        await holding.wait()
        await collect(engine, STORY)
        shared = list(engine._threads_in_use)
        release.set()
        await job
    finally:
        release.set()
        other.close()
        engine.close()
    assert (alone, shared) == ([(2, 1)], [(1, 1)])  # (generation, prompt evaluation) threads
