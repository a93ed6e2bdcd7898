"""Agent turns around tools, with a scripted model: fixed answers, facts, waiting calls, the guard."""

from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
from scripted_agent import ScriptedLlm, booking_agent, say

from voice.agents import assistant
from voice.agents.store import ReminderStore
from voice.llm import replies
from voice.llm.agent import Agent, AgentOptions
from voice.llm.tools import Toolbox, tool, was_said

NOW = datetime(2026, 12, 2, 14, 5)


def assistant_agent(tmp_path, *replies_: str) -> tuple[Agent, ScriptedLlm, ReminderStore]:
    store = ReminderStore(tmp_path / "r.sqlite3")
    llm = ScriptedLlm(*replies_)
    tools = Toolbox([assistant.get_weather, *assistant.reminder_tools(store, "u", lambda: NOW)])
    return Agent(llm, toolbox=tools, clock=lambda: NOW), llm, store


async def test_a_templated_result_is_said_without_a_second_model_round(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path, '{"name": "get_weather", "arguments": {"city": "Paris", '
                                              '"day": "tomorrow"}}')
    spoken, _ = await say(agent, "What's the weather in Paris tomorrow?")
    assert spoken == "Let me check. Tomorrow in Paris: light rain, with a high of 14 and a low of 8 degrees Celsius."
    assert len(llm.requests) == 1


async def test_a_tool_round_shows_every_tool_but_lets_the_model_call_only_the_routed_ones(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path, '{"name": "get_weather", "arguments": {"city": "Paris"}}')
    await say(agent, "Is it raining in Paris?")
    options = llm.requests[0][1]
    assert [t["function"]["name"] for t in options.tools] == ["get_weather", "add_reminder", "list_reminders"]
    assert options.callable_tools == ("get_weather",)


async def test_a_result_without_a_template_goes_to_the_model_as_facts_in_a_round_without_tools():
    @tool(triggers=("population",))
    def population(city: str) -> dict:
        """Population of a city."""
        return {"city": city, "people": 2_100_000}

    llm = ScriptedLlm('{"name": "population", "arguments": {"city": "Paris"}}', "About two million people live there.")
    agent = Agent(llm, toolbox=Toolbox([population]), options=None)
    spoken, _ = await say(agent, "What is the population of Paris?")
    messages, options = llm.requests[1]
    assert options.tools is None and '"people": 2100000' in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "What is the population of Paris?"}
    assert spoken.endswith("About two million people live there.")


async def test_a_call_without_the_time_waits_for_it_and_the_answer_completes_it(tmp_path):
    agent, llm, store = assistant_agent(tmp_path, '{"name": "add_reminder", "arguments": {"text": "call mom", '
                                                  '"time": "09:00"}}')
    asked, _ = await say(agent, "Remind me to call mom.", 1)
    assert asked == "At what time should I remind you?"
    confirm, _ = await say(agent, "At six in the evening.", 2)
    assert confirm == "Shall I remind you to call mom at 6 pm?" and len(llm.requests) == 1
    done, _ = await say(agent, "Yes.", 3)
    assert [(r["text"], r["time"], r["day"]) for r in store.of("u")] == [("call mom", "18:00", "2026-12-02")]
    assert done == "Done. I'll remind you to call mom at 6 pm."


async def test_a_claimed_action_that_no_tool_did_is_replaced_by_an_honest_line(tmp_path):
    agent, _, store = assistant_agent(tmp_path, "Sure! I've set a reminder to call your sister at 6 pm.")
    spoken, _ = await say(agent, "Remind me to call my sister at 6 pm.")
    assert spoken == "Sure! " + replies.NOT_DONE and store.of("u") == []


async def test_internal_text_from_the_model_is_never_spoken_and_a_fixed_line_stands_in(tmp_path):
    agent, _, _ = assistant_agent(tmp_path, "Call the tool again with correct arguments, or ask the user for the "
                                            "missing detail.")
    spoken, _ = await say(agent, "Tell me something.")
    assert spoken == replies.NOTHING_TO_SAY


async def test_a_sum_is_worked_out_without_the_model_and_that_means_the_last_answer(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path)
    first, _ = await say(agent, "What's fifty-eight plus sixty-seven?", 1)
    second, _ = await say(agent, "And if I take away thirty from that?", 2)
    assert (first, second) == ("58 plus 67 is 125.", "125 minus 30 is 95.") and llm.requests == []


async def test_an_unknown_city_gets_the_tools_apology_and_no_model_round(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path, '{"name": "get_weather", "arguments": {"city": "Nairobi"}}')
    spoken, _ = await say(agent, "What's the weather in Nairobi?")
    assert spoken.startswith("Let me check. Sorry, I have no forecast for Nairobi.") and len(llm.requests) == 1


async def test_a_city_the_user_never_said_is_asked_for(tmp_path):
    agent, _, _ = assistant_agent(tmp_path, '{"name": "get_weather", "arguments": {"city": "Paris"}}')
    spoken, _ = await say(agent, "Is it going to rain?")
    assert spoken.endswith("Which city would you like the weather for?")


async def test_a_corrected_time_is_proposed_again_in_the_same_half_of_the_day(tmp_path):
    agent, llm, store = assistant_agent(tmp_path, '{"name": "add_reminder", "arguments": {"text": "call the plumber", '
                                                  '"time": "15:00"}}')
    await say(agent, "Remind me to call the plumber at 3 pm.", 1)
    again, events = await say(agent, "No, make it four.", 2)
    [call] = [e for e in events if e.type == "tool_call"]
    assert call.arguments["time"] == "16:00" and again == "Shall I remind you to call the plumber at 4 pm?"
    await say(agent, "Yes.", 3)
    assert [r["time"] for r in store.of("u")] == ["16:00"] and len(llm.requests) == 1


async def test_a_side_question_keeps_the_proposal_and_asks_it_again(tmp_path):
    agent, _, store = assistant_agent(
        tmp_path, '{"name": "add_reminder", "arguments": {"text": "pick up the kids", "time": "15:00"}}',
        '{"name": "get_weather", "arguments": {"city": "London", "day": "today"}}')
    await say(agent, "Remind me to pick up the kids at 3 pm.", 1)
    side, _ = await say(agent, "Wait, will it rain in London today?", 2)
    assert "Today in London: cloudy" in side and side.endswith("Shall I remind you to pick up the kids at 3 pm?")
    await say(agent, "Okay, yes, set that reminder.", 3)
    assert [r["time"] for r in store.of("u")] == ["15:00"]


async def test_a_remark_that_triggers_a_tool_but_names_nothing_is_just_answered(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path, '{"name": "get_weather", "arguments": {"city": "Paris"}}',
                                    "It really has been lovely!")
    spoken, events = await say(agent, "The weather has been lovely this week.")
    assert spoken == "It really has been lovely!" and events == [] and llm.requests[1][1].tools is None


async def test_no_make_it_six_corrects_the_party_size_just_given_not_the_time(tmp_path):
    agent, _, _ = booking_agent(tmp_path)
    await say(agent, "Indian food, please.", 1)
    await say(agent, "We are four.", 2)
    spoken, _ = await say(agent, "No, make it six.", 3)
    assert agent.flow.slots == {"cuisine": "indian", "party_size": 6} and agent.flow.name == "time"
    assert spoken.startswith("A table for 6.")


async def test_a_value_outside_the_slots_bounds_is_refused_with_the_limit(tmp_path):
    agent, _, _ = booking_agent(tmp_path)
    await say(agent, "Japanese.", 1)
    too_many, _ = await say(agent, agent.dtmf_text("20"), 2)
    assert agent.flow.name == "party_size" and "12" in too_many and too_many.endswith("?")
    await say(agent, "Two of us.", 3)
    too_late, _ = await say(agent, "Eleven pm.", 4)
    assert agent.flow.name == "time" and "10 pm" in too_late


async def test_a_question_at_the_confirmation_keeps_the_booking_ready(tmp_path):
    agent, store, _ = booking_agent(tmp_path, "Yes, we have a kids menu.")
    await say(agent, "Mexican food for two people at 8 pm, please.", 1)
    spoken, _ = await say(agent, "Wait, do you have a kids menu?", 2)
    assert agent.flow.name == "confirm" and spoken.endswith("Shall I book it?") and store.all() == []
    await say(agent, "Yes, book it.", 3)
    assert agent.flow.name == "confirmed" and [r["time"] for r in store.all()] == ["20:00"]


async def test_a_question_a_routed_tool_answers_must_be_a_call_and_a_remark_need_not(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path, '{"name": "get_weather", "arguments": {"city": "Nairobi"}}',
                                    "Lovely indeed!")
    await say(agent, "What will the weather be like in Nairobi tomorrow?", 1)
    await say(agent, "The weather has been lovely this week.", 2)
    asked, remarked = llm.requests[0][1], llm.requests[-1][1]
    assert asked.require_call and asked.callable_tools == ("get_weather",)
    assert remarked.tools is not None and not remarked.require_call


async def test_a_required_lookup_says_its_filler_before_the_model_writes_anything(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path, '{"name": "get_weather", "arguments": {"city": "Paris"}}')
    agent.hear("Is it sunny in Paris?")
    async with contextlib.aclosing(agent.reply(1)) as items:
        async for item in items:
            if isinstance(item, str) and item.strip():
                assert item == "Let me check." and llm.requests == []  # the model was not even asked yet
                break


async def test_a_request_to_act_in_the_world_is_refused_with_what_the_agent_can_do(tmp_path):
    llm = ScriptedLlm("Sure, I sent it!")
    tools = Toolbox([assistant.get_weather])
    options = AgentOptions(abilities="I can tell you the weather.", refuse_actions=True)
    agent = Agent(llm, toolbox=tools, options=options)
    spoken, events = await say(agent, "Send an email to my boss saying I'll be late today.")
    assert spoken == f"{replies.CANNOT} I can tell you the weather." and llm.requests == [] and events == []


@pytest.mark.parametrize("value, said, heard", [
    ("Nairobi, Kenya", "What's the weather in Nairobi tomorrow?", True), ("Paris", "Is it cold?", False),
    ("New York City", "Is it raining in New York?", True), ("Rome", "What about Rome?", True)])
def test_a_value_counts_as_said_when_the_user_said_it_or_one_of_its_longer_words(value, said, heard):
    assert was_said(value, said) is heard


@pytest.mark.parametrize("text, must", [("Remind me to call my sister at 6 pm.", True),
                                        ("Set a reminder for 7:15 am to go for a run.", True),
                                        ("What's the weather in Rome?", True),
                                        ("I'm so tired of this rain.", False)])
def test_questions_and_requests_routed_to_a_tool_must_be_calls_remarks_need_not(text, must):
    from voice.llm.grounding import is_request

    assert is_request(text) is must


async def test_a_live_data_question_without_a_tool_for_it_is_declined_and_the_flow_goes_on(tmp_path):
    agent, _, llm = booking_agent(tmp_path, "It will be mild with a light breeze.",
                                  abilities="I can help you book a table.")
    spoken, _ = await say(agent, "What's the weather like tonight?")
    assert spoken.startswith(f"{replies.CANNOT} I can help you book a table.") and spoken.endswith("?")
    assert llm.requests == [] and agent.flow.name == "cuisine"


async def test_a_question_after_a_tool_turn_is_offered_that_tool_but_not_forced_to_call_it(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path, '{"name": "get_weather", "arguments": {"city": "Rome"}}',
                                    "A spider has eight legs.")
    await say(agent, "Is it sunny in Rome today?", 1)
    await say(agent, "How many legs does a spider have?", 2)
    follow_up = llm.requests[-1][1]
    assert follow_up.callable_tools == ("get_weather",) and not follow_up.require_call


async def test_a_declined_live_data_question_at_a_confirmation_keeps_the_booking_ready(tmp_path):
    agent, store, _ = booking_agent(tmp_path, abilities="I can help you book a table.")
    await say(agent, "Mexican food for two people at 8 pm, please.", 1)
    spoken, _ = await say(agent, "Wait, what's the weather like tonight?", 2)
    assert spoken.startswith(replies.CANNOT) and spoken.endswith("Shall I book it?")
    await say(agent, "Yes.", 3)
    assert [r["time"] for r in store.all()] == ["20:00"]


async def test_a_call_of_a_tool_not_offered_this_turn_is_not_made(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path, '{"name": "add_reminder", "arguments": {"text": "umbrella", '
                                              '"time": "09:00"}}', "Yes, take one.")
    spoken, events = await say(agent, "I need an umbrella in Berlin today.")
    assert [e for e in events if e.type == "tool_call"] == [] and spoken == "Yes, take one."
    assert llm.requests[1][1].tools is None


async def test_a_sum_after_a_tool_turn_is_still_worked_out_exactly(tmp_path):
    agent, llm, _ = assistant_agent(tmp_path, '{"name": "get_weather", "arguments": {"city": "Rome"}}')
    await say(agent, "Is it sunny in Rome today?", 1)
    spoken, _ = await say(agent, "What is two plus three?", 2)
    assert spoken == "2 plus 3 is 5." and len(llm.requests) == 1


@pytest.mark.parametrize("text, acts", [("Send an email to my boss.", True), ("Can you call my mom?", True),
                                        ("Turn on the lights.", True), ("Stop the music.", True),
                                        ("Start a timer for ten minutes.", True),
                                        ("Stop, please. Thank you. That is enough for now.", False),
                                        ("Stop.", False), ("Okay, stop it.", False), ("Stop talking.", False),
                                        ("What is the capital of France?", False)])
def test_asking_the_agent_to_stop_talking_is_not_a_request_to_act_in_the_world(text, acts):
    from voice.llm.grounding import is_action_request

    assert is_action_request(text) is acts
