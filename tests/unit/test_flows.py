"""The dialogue flow engine and the agent around it, driven by scripted model outputs (no LLM)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from scripted_agent import ScriptedLlm, booking_agent, say

from voice.agents import booking
from voice.llm import replies
from voice.llm.agent import Agent, AgentOptions
from voice.llm.flows import FlowError, FlowRun, FlowSpec, load_flow
from voice.llm.tools import Toolbox, tool

AGENTS_DIR = Path(__file__).resolve().parents[2] / "voice" / "agents"

SUB_FLOW = """
name: shop
start: item
identity: You sell shoes.
rules: [Be brief.]
states:
  item:
    goal: find out which shoe
    slots: {item: {type: enum, values: {boots: [boot], sneakers: [trainers]}}}
    transitions: [{when: filled, to: contact}]
  contact:
    flow: details
    transitions: [{when: done, to: thanks}]
  thanks:
    ask: Thanks, we will call {phone}.
subflows:
  details:
    name: details
    start: size
    states:
      size:
        ask: Which size?
        slots: {size: {type: integer, minimum: 30, maximum: 50}}
        transitions: [{when: filled, to: phone}]
      phone:
        ask: Your phone number?
        slots: {phone: {type: text, description: phone number}}
        transitions: [{when: filled, to: done}]
      done: {final: true}
"""


# ---------------------------------------------------------------- the flow engine alone


def test_a_filled_slot_moves_the_flow_to_the_next_state():
    run = FlowRun(load_flow(booking.FLOW))
    heard = run.hear("Italian, please")
    assert heard.moved and run.name == "party_size" and run.slots == {"cuisine": "italian"}


def test_one_answer_with_every_detail_skips_the_states_it_filled():
    run = FlowRun(load_flow(booking.FLOW))
    run.hear("Sushi for four people at seven thirty pm")
    assert run.name == "confirm"
    assert run.slots == {"cuisine": "japanese", "party_size": 4, "time": "19:30"}


def test_a_bare_number_fills_only_the_slot_being_asked_for():
    run = FlowRun(load_flow(booking.FLOW))
    run.hear("Italian")
    run.hear("seven")  # the party size question: 7 people, not 7 o'clock
    assert run.slots == {"cuisine": "italian", "party_size": 7}


def test_a_time_outside_opening_hours_is_not_taken():
    run = FlowRun(load_flow(booking.FLOW))
    run.hear("Italian for 2 people")
    run.hear("at 3 pm")
    assert run.name == "time" and "time" not in run.slots


def test_start_over_is_recognised_in_any_state_and_clears_the_slots():
    run = FlowRun(load_flow(booking.FLOW))
    run.hear("Indian for 2 people")
    heard = run.hear("Let's start over please")
    assert heard.intent == "start_over" and run.name == "cuisine" and run.slots == {}


def test_asking_for_a_human_goes_to_the_handoff_state_even_inside_a_sub_flow():
    run = FlowRun(load_flow(SUB_FLOW))
    run.hear("boots")
    assert run.path == "shop/contact/size"
    assert run.hear("can I talk to a human").intent == "human" and run.path == "shop/handoff"


def test_dtmf_keys_mean_the_states_menu_choice_or_a_global_intent():
    run = FlowRun(load_flow(booking.FLOW))
    assert run.dtmf_text("2") == "japanese"
    assert run.dtmf_text("0") == "talk to a human"
    run.hear(run.dtmf_text("2"))
    assert run.dtmf_text("4") == "4"  # no menu in party_size: the digits are the answer


def test_a_sub_flow_runs_in_its_parent_state_and_returns_on_done():
    run = FlowRun(load_flow(SUB_FLOW))
    run.hear("sneakers")
    assert run.path == "shop/contact/size" and run.ask() == "Which size?"
    run.hear("42")
    assert run.path == "shop/contact/phone"
    run.set_slots({"phone": "555 0100"})
    assert run.path == "shop/thanks" and run.ask() == "Thanks, we will call 555 0100."


def test_the_model_may_only_choose_the_states_llm_targets():
    run = FlowRun(load_flow(booking.FLOW))
    run.stack[-1].state = "modify"
    assert not run.choose("confirmed")
    assert run.choose("time") and run.name == "time"


def test_a_changed_answer_in_the_modify_loop_goes_straight_back_to_confirm():
    run = FlowRun(load_flow(booking.FLOW))
    run.hear("Italian for 2 people at 7 pm")
    run.declined("book_table")
    run.choose("party_size")
    run.hear("5")
    assert run.name == "confirm" and run.pending_action() == {"cuisine": "italian", "party_size": 5, "time": "19:00"}


def test_a_tool_result_transition_keeps_the_named_result_fields_as_slots():
    run = FlowRun(load_flow(booking.FLOW))
    run.hear("Italian for 2 people at 8 pm")
    assert run.tool_done("book_table", True, {"booking_number": 7, "other": 1})
    assert run.name == "confirmed" and run.slots["booking_number"] == 7 and "other" not in run.slots


def test_the_state_prompt_has_identity_rules_goal_slots_and_profile():
    run = FlowRun(load_flow(booking.FLOW))
    run.hear("Italian")
    prompt = run.prompt({"name": "Ana"}, summary="She booked last week.")
    for part in ("Trattoria Voce", "Rules:", "Your goal now: find out how many people", "cuisine: italian",
                 "About the user: name: Ana", "She booked last week."):
        assert part in prompt


def test_a_flow_with_a_transition_to_an_unknown_state_is_refused():
    with pytest.raises(FlowError, match="unknown state 'nowhere'"):
        load_flow("name: x\nstart: a\nstates:\n  a:\n    transitions: [{when: filled, to: nowhere}]\n")


def test_the_shipped_flows_load():
    for path in AGENTS_DIR.glob("*.yaml"):
        assert isinstance(load_flow(path), FlowSpec)


# ---------------------------------------------------------------- the agent with scripted model outputs


async def test_the_booking_conversation_reaches_confirmed_with_one_booking_row(tmp_path):
    agent, store, _ = booking_agent(tmp_path, "Welcome! Which cuisine would you like?")
    await say(agent, "Hi, I'd like a table")
    for text in ("Italian", "4 people", "at 8 pm"):
        await say(agent, text)
    spoken, _ = await say(agent, "yes please")
    assert agent.flow.name == "confirmed"
    assert agent.flow.slots | {"booking_number": 1} == {"cuisine": "italian", "party_size": 4, "time": "20:00",
                                                         "booking_number": 1}
    assert [(r["cuisine"], r["party_size"], r["time"]) for r in store.all()] == [("italian", 4, "20:00")]
    assert "booking number is 1" in spoken


async def test_state_changed_events_report_each_state_with_its_slots(tmp_path):
    agent, _, _ = booking_agent(tmp_path)
    _, events = await say(agent, "Mexican for 2 people")
    changes = [(e.state, e.slots) for e in events if e.type == "state_changed"]
    assert changes == [("booking/time", {"cuisine": "mexican", "party_size": 2})]


async def test_the_model_moves_the_flow_with_go_to_step(tmp_path):
    agent, _, llm = booking_agent(tmp_path, '{"name": "go_to_step", "arguments": {"step": "party_size"}}')
    await say(agent, "Italian for 2 people at 7 pm")
    await say(agent, "no")
    assert agent.flow.name == "modify"
    spoken, _ = await say(agent, "the number of guests")
    offered = [t["function"]["name"] for t in llm.requests[-1][1].tools]
    assert offered == ["go_to_step"] and agent.flow.name == "party_size"
    assert spoken.endswith("How many people will be joining?")


async def test_a_consequential_tool_runs_only_after_the_users_yes(tmp_path):
    agent, store, _ = booking_agent(tmp_path)
    spoken, events = await say(agent, "Italian for 2 people at 7 pm")
    assert spoken.endswith("Shall I book it?") and [e.type for e in events][-1] == "tool_call"
    assert store.all() == []
    await say(agent, "yes")
    assert len(store.all()) == 1


async def test_no_to_the_booking_leads_to_the_modify_question(tmp_path):
    agent, store, _ = booking_agent(tmp_path)
    await say(agent, "Italian for 2 people at 7 pm")
    spoken, events = await say(agent, "no")
    assert agent.flow.name == "modify" and spoken.startswith("What would you like to change")
    assert [e.result["error"] for e in events if e.type == "tool_result"] == ["declined"] and store.all() == []


async def test_a_correction_instead_of_yes_asks_again_with_the_new_value(tmp_path):
    agent, store, _ = booking_agent(tmp_path)
    await say(agent, "Italian for 2 people at 7 pm")
    spoken, _ = await say(agent, "no, make it 9 pm")
    assert agent.flow.name == "confirm" and "9 pm" in spoken and store.all() == []


async def test_barge_in_before_the_move_was_heard_leaves_the_flow_where_the_user_left_it(tmp_path):
    agent, _, _ = booking_agent(tmp_path, '{"name": "go_to_step", "arguments": {"step": "time"}}')
    await say(agent, "Italian for 2 people at 7 pm")
    await say(agent, "no")
    agent.hear("the time")
    items = [i async for i in agent.reply(3)]
    assert agent.flow.name == "time"
    agent.interrupted(heard="")  # cut before a word of "What time would you like" was played
    assert agent.flow.name == "modify" and agent.state_events()[0].state == "booking/modify"
    assert [m["role"] for m in agent.history[-2:]] == ["assistant", "user"]  # nothing unheard was kept
    assert any(getattr(i, "type", "") == "tool_result" for i in items)


async def test_barge_in_after_the_move_was_heard_keeps_it(tmp_path):
    agent, _, _ = booking_agent(tmp_path, '{"name": "go_to_step", "arguments": {"step": "time"}}')
    await say(agent, "Italian for 2 people at 7 pm")
    await say(agent, "no")
    agent.hear("the time")
    _ = [i async for i in agent.reply(3)]
    agent.interrupted(heard="A table for 2. What time")
    assert agent.flow.name == "time"
    assert agent.history[-1] == {"role": "assistant", "content": "A table for 2. What time"}


async def test_a_yes_after_an_unheard_booking_result_does_not_book_twice(tmp_path):
    agent, store, _ = booking_agent(tmp_path)
    await say(agent, "Italian for 2 people at 7 pm")
    agent.hear("yes")
    _ = [i async for i in agent.reply(2)]
    agent.interrupted(heard="")  # the booking ran, but nobody heard "Done!"
    assert agent.flow.name == "confirm"
    await say(agent, "sorry, what?")  # the agent asks again
    await say(agent, "yes")
    assert agent.flow.name == "confirmed" and len(store.all()) == 1


async def test_a_question_the_user_never_heard_cannot_be_confirmed(tmp_path):
    agent, store, _ = booking_agent(tmp_path)
    agent.hear("Italian for 2 people at 7 pm")
    _ = [i async for i in agent.reply(1)]
    agent.interrupted(heard="")
    await say(agent, "yes")
    assert store.all() == []


async def test_a_slow_tool_gets_a_filler_line_before_its_answer(tmp_path):
    @tool(timeout_s=2)
    async def slow_lookup(q: str) -> str:
        """Look something up."""
        await asyncio.sleep(0.3)
        return "found"

    llm = ScriptedLlm('{"name": "slow_lookup", "arguments": {"q": "x"}}', "Here it is.")
    agent = Agent(llm, toolbox=Toolbox([slow_lookup]), options=AgentOptions(filler_after_s=0.05, call_filler=""))
    spoken, _ = await say(agent, "look it up")
    assert spoken == "One moment. Here it is."


async def test_a_call_filler_is_said_as_soon_as_the_model_starts_a_call_and_replaces_the_slow_filler():
    @tool(timeout_s=2)
    async def slow_lookup(q: str) -> str:
        """Look something up."""
        await asyncio.sleep(0.3)
        return "found"

    llm = ScriptedLlm('{"name": "slow_lookup", "arguments": {"q": "x"}}', "Here it is.")
    agent = Agent(llm, toolbox=Toolbox([slow_lookup]), options=AgentOptions(filler_after_s=0.05))
    agent.hear("look it up")
    items = [item async for item in agent.reply(1)]
    first_event = next(i for i, x in enumerate(items) if not isinstance(x, str))
    assert items[0] == "Let me check." and first_event > 0  # before the tool_call event: the call was still written
    assert "".join(x for x in items if isinstance(x, str)) == "Let me check. Here it is."


async def test_a_tool_timeout_gets_a_fixed_apology_and_no_second_model_round():
    @tool(timeout_s=0.05)
    async def hang() -> str:
        """Never answers."""
        await asyncio.sleep(10)
        return ""

    llm = ScriptedLlm('{"name": "hang", "arguments": {}}', "It worked!")
    agent = Agent(llm, toolbox=Toolbox([hang]), options=AgentOptions(filler_after_s=5))
    spoken, events = await say(agent, "do it")
    result = next(e for e in events if e.type == "tool_result")
    assert not result.ok and result.result["error"] == "timeout"
    assert len(llm.requests) == 1 and spoken == "Let me check. " + replies.FAILED


async def test_bad_arguments_get_a_question_for_the_argument_not_a_retry():
    @tool(questions={"b": "And the second number?"})
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    llm = ScriptedLlm('{"name": "add", "arguments": {"a": 1, "b": "lots"}}', "It is 3.")
    agent = Agent(llm, toolbox=Toolbox([add]), options=AgentOptions(call_filler=""))
    spoken, events = await say(agent, "add one and something")
    assert [e.ok for e in events if e.type == "tool_result"] == [False]
    assert len(llm.requests) == 1 and spoken == "And the second number?"


async def test_a_made_up_tool_name_gets_a_direct_answer_without_the_tools_and_without_a_note():
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    llm = ScriptedLlm('{"name": "tell_joke", "arguments": {}}',
                      "Why did the cat sit on the laptop? To keep an eye on the mouse.")
    agent = Agent(llm, toolbox=Toolbox([get_weather]), options=AgentOptions(route_tools=False))
    spoken, events = await say(agent, "tell me a joke")
    assert [e for e in events if e.type in ("tool_call", "tool_result")] == []  # a tool it was not offered
    retry_messages, retry_options = llm.requests[1]
    assert retry_options.tools is None and retry_messages[-1] == {"role": "user", "content": "tell me a joke"}
    assert spoken.startswith("Why did the cat")


async def test_a_tool_used_last_turn_stays_offered_for_a_follow_up_question():
    @tool(triggers=("weather",))
    def get_weather(city: str) -> str:
        """Weather."""
        return "sunny"

    llm = ScriptedLlm('{"name": "get_weather", "arguments": {"city": "Paris"}}', "Sunny.", "Rain.")
    agent = Agent(llm, toolbox=Toolbox([get_weather]))
    await say(agent, "What is the weather in Paris?")
    await say(agent, "And in Berlin?", 2)
    assert llm.requests[-1][1].tools is not None


async def test_a_tool_is_offered_only_when_its_trigger_words_were_said():
    @tool(triggers=("rain",))
    def get_weather(city: str) -> str:
        """Weather."""
        return "sunny"

    llm = ScriptedLlm("At nine.", "Sunny.")
    agent = Agent(llm, toolbox=Toolbox([get_weather]))
    await say(agent, "When does the train to Paris leave?")  # "rain" only at a word's start
    await say(agent, "Will it be raining in Paris?", 2)
    assert llm.requests[0][1].tools is None and llm.requests[1][1].tools is not None
