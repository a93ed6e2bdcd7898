"""What the agent says about tool outcomes in its own words (voice/llm/replies.py)."""

from __future__ import annotations

from voice.llm import replies
from voice.llm.rounds import Turn
from voice.llm.tools import ToolCall, ToolOutcome, error_outcome, tool


@tool(say="It is {sky} in {city}.", questions={"city": "Which city?"})
def get_weather(city: str) -> dict:
    """Weather."""
    return {}


CALL = ToolCall("1", "get_weather", {"city": "Paris"})


def test_a_result_with_a_template_is_said_from_it():
    assert replies.outcome_line(ToolOutcome(CALL, True, {"sky": "sunny", "city": "Paris"}), get_weather) == \
        "It is sunny in Paris."


def test_an_unsaid_or_bad_argument_gets_its_question():
    ungrounded = error_outcome(CALL, "ungrounded", "the user did not say city 'Paris'; do not guess")
    assert replies.outcome_line(ungrounded, get_weather) == "Which city?"


def test_a_tool_error_message_is_said_as_an_apology_and_nothing_internal():
    failed = error_outcome(CALL, "failed", "I have no forecast for Atlantis")
    assert replies.outcome_line(failed, get_weather) == "Sorry, I have no forecast for Atlantis."
    for kind in ("timeout", "crashed"):
        assert replies.outcome_line(error_outcome(CALL, kind, "TypeError: x"), get_weather) == replies.FAILED


def test_a_made_up_tool_gets_no_line_so_the_model_answers_plainly():
    assert replies.outcome_line(error_outcome(CALL, "unknown_tool", "no such tool"), None) is None


def test_facts_carry_the_result_and_internal_texts_are_rules_and_tools_not_what_is_meant_to_be_said():
    facts = replies.facts([ToolOutcome(CALL, True, {"sky": "sunny"})])
    prompt = (f"You are the assistant of a cafe open from 8 am to 6 pm.\nRules:\n- Be brief.\nYour goal now: ask "
              f'which city.\nSay something like: "Which city?"\n{facts}')
    assert '"sky": "sunny"' in facts
    assert replies.internal_texts([{"role": "system", "content": prompt}], [get_weather.schema()]) == [
        replies.FACTS_HEADER, "Be brief.", "Weather."]


def test_a_dropped_claim_ends_with_an_honest_line():
    t = Turn("send an email", spoken="Sure!", dropped=[("claim", "I've sent it.")])
    assert replies.closing_line(t, "fallback") == replies.CANNOT
    t.offered_action = True
    assert replies.closing_line(t, "fallback") == replies.NOT_DONE
    assert replies.closing_line(Turn("x", dropped=[("echo", "x")]), "fallback") == replies.NOTHING_TO_SAY
    assert replies.closing_line(Turn("x"), "fallback") == "fallback"
