"""The checks of `voice eval`, each with replies that pass and replies that fail. The failing
examples are what the agent really said in typed and spoken turns before issue 11."""

from __future__ import annotations

import pytest

from voice.eval.checks import (
    ToolUse,
    TurnFacts,
    check_claims,
    check_echo,
    check_internal_text,
    check_no_tools,
    check_reply,
    check_tools,
    check_turn,
    echo_score,
    false_claims,
    values_match,
)
from voice.eval.scenario import Expect, ReplyExpect, ToolExpect
from voice.eval.text import clock_time, number_words, numbers_in, wer


def names_failed(checks) -> list[str]:
    return [c.name for c in checks if not c.ok]


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(("text", "numbers"), [
    ("Seventeen times twenty-three is 391.", [17, 23, 391]),
    ("That's three hundred and ninety-one.", [391]),
    ("1,234 people and 3.5 hours", [1234, 3.5]),
    ("between six and seven", [6, 7]),
    ("one two three", [1, 2, 3]),
    ("two thousand and five", [2005]),
    ("no numbers here", []),
])
def test_numbers_are_read_as_digits_or_words(text, numbers):
    assert sorted(numbers_in(text)) == sorted(float(n) for n in numbers)


def test_number_words_and_wer_treat_digits_and_words_alike():
    assert number_words(2436) == "two thousand four hundred thirty six"
    assert wer("Remind me at 6 pm.", "remind me at six p.m.") == 0.0
    assert wer("What is seventeen times twenty three?", "What is 17 times 23") == 0.0
    assert wer("one two three four", "one two four") == 0.25
    assert wer("", "") == 0.0 and wer("", "noise") == 1.0


@pytest.mark.parametrize(("value", "time"), [
    ("18:00", "18:00"), ("18:00:00", "18:00"), ("6 pm", "18:00"), ("6:30 p.m.", "18:30"), ("7.15am", "07:15"),
    ("12 am", "00:00"), ("12 pm", "12:00"), ("6", None), ("13 pm", None), ("25:00", None), (6, None),
])
def test_clock_times_are_normalised(value, time):
    assert clock_time(value) == time


# ---------------------------------------------------------------- tools


def test_tool_arguments_match_as_a_subset_with_times_numbers_and_text_normalised():
    use = ToolUse("c1", "add_reminder", {"text": "Call my sister.", "time": "18:00"})
    assert names_failed(check_tools([ToolExpect(name="add_reminder", args={"time": "6 pm"})], [use])) == []
    assert names_failed(check_tools([ToolExpect(name="add_reminder", args={"text": "call my sister"})], [use])) == []
    assert names_failed(check_tools([ToolExpect(name="add_reminder", args={"text": {"regex": "sister"}})], [use])) == []
    assert names_failed(check_tools([ToolExpect(name="add_reminder")], [use])) == []


def test_a_morning_time_for_an_evening_request_fails_and_shows_the_call_made():
    use = ToolUse("c1", "add_reminder", {"text": "call my sister", "time": "06:00"})
    [check] = check_tools([ToolExpect(name="add_reminder", args={"time": "18:00"})], [use])
    assert not check.ok
    assert check.detail == 'expected add_reminder({"time": "18:00"}); got add_reminder({"text": "call my sister", ' \
                           '"time": "06:00"})'


def test_a_missing_or_other_tool_fails():
    weather = ToolUse("c1", "get_weather", {"city": "Paris", "day": "today"})
    assert names_failed(check_tools([ToolExpect(name="get_weather", args={"day": "tomorrow"})], [weather])) == \
        ["tool_called"]
    assert names_failed(check_tools([ToolExpect(name="list_reminders")], [weather])) == ["tool_called"]
    assert names_failed(check_tools([ToolExpect(name="get_weather")], [])) == ["tool_called"]


def test_values_match_numbers_by_value_and_lists_item_by_item():
    assert values_match(6, "6") and values_match(6, 6.0) and not values_match(6, "six people")
    assert values_match(["a", 2], ["A", 2]) and not values_match(["a"], ["a", "b"])
    assert values_match({"party_size": 6}, {"party_size": 6, "time": "19:30"})
    assert not values_match({"party_size": 6}, {"time": "19:30"})


def test_no_tools_and_forbidden_tools():
    booked = ToolUse("c1", "book_table", {"party_size": 4}, ok=True)
    weather = ToolUse("c2", "get_weather", {"city": "Paris"}, ok=False)  # tried, failed: still a call
    assert check_no_tools([]).ok and not check_no_tools([booked]).ok and not check_no_tools([weather]).ok
    assert check_no_tools([booked], ["add_reminder"]).ok
    assert not check_no_tools([booked], ["book_table"]).ok


def test_a_proposal_or_a_declined_earlier_proposal_is_not_a_call_of_this_turn():
    proposed = ToolUse("c1", "book_table", {"party_size": 2})  # "Shall I book it?": no result yet
    declined = ToolUse("c1", "add_reminder", {"time": "17:00"}, ok=False, announced=False)
    assert check_no_tools([proposed]).ok and check_no_tools([proposed], ["book_table"]).ok
    assert check_no_tools([declined]).ok and check_no_tools([declined], ["add_reminder"]).ok
    tried_with_bad_arguments = ToolUse("c2", "add_reminder", {"time": "soon"}, ok=False)
    assert not check_no_tools([tried_with_bad_arguments]).ok
    confirmed_now = ToolUse("c1", "book_table", {"party_size": 2}, ok=True, announced=False)
    assert not check_no_tools([confirmed_now], ["book_table"]).ok


# ---------------------------------------------------------------- reply text


def test_reply_must_and_must_not_regexes():
    expect = ReplyExpect(must=[r"\?", r"\b(6|six)\b"], must_not=[r"\bbooked\b"])
    assert names_failed(check_reply("So that's six people at 7 pm. Shall I book it?", expect)) == []
    assert names_failed(check_reply("Your table for 4 is booked.", expect)) == \
        ["reply_must", "reply_must", "reply_must_not"]


def test_reply_word_lists_match_whole_words_and_phrases():
    expect = ReplyExpect(any_words=["can't", "not able"], no_words=["sent"])
    assert names_failed(check_reply("Sorry, I'm not able to send emails.", expect)) == []
    assert names_failed(check_reply("I can't, but I sent it anyway.", expect)) == ["reply_no_words"]
    assert names_failed(check_reply("Sure, I can help you send an email to your boss.", expect)) == \
        ["reply_any_words"]
    assert names_failed(check_reply("The sentence is fine.", ReplyExpect(no_words=["sent"]))) == []


def test_the_number_check_wants_the_result_not_another_multiplication():
    expect = ReplyExpect(number=391)
    assert names_failed(check_reply("Seventeen times twenty-three is three hundred and ninety-one.", expect)) == []
    assert names_failed(check_reply("17 times 23 is 391.", expect)) == []
    [check] = check_reply("That's the same as 23 times 17.", expect)
    assert not check.ok and "numbers said: ['23', '17']" in check.detail
    assert names_failed(check_reply("Seventeen times twenty-three is 491.", expect)) == ["reply_number"]


# ---------------------------------------------------------------- built-in checks


@pytest.mark.parametrize("reply", [
    "Call the tool again with correct arguments, or ask the user for the missing detail.",
    "There is no tool 'read verse', and none is needed. Answer the user directly.",
    'Tool call get_weather(city="Paris", day="tomorrow") was not valid: day: Input should be today.',
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "The user said they want a reminder.",
    "I should not guess the city, do not guess.",
    "Your goal now: find out which cuisine.",
    "The high_celsius is 21.",
])
def test_internal_text_is_detected(reply):
    assert not check_internal_text(reply).ok


@pytest.mark.parametrize("reply", [
    "It will be sunny in Paris tomorrow, with a high of 21 degrees.",
    "Lovely, Italian. How many people will be joining?",
    "Sorry, I can't send emails. I can check the weather or set reminders.",
    "Seventeen times twenty-three is 391.",
])
def test_ordinary_replies_are_not_internal_text(reply):
    assert check_internal_text(reply).ok


def test_an_echoed_statement_or_question_is_caught():
    assert not check_echo("I love hiking in the mountains on weekends.", "You love hiking in the mountains on "
                          "weekends.", 0.8).ok
    assert not check_echo("What is the capital of France?", "What is the capital of France?", 0.8).ok
    assert not check_echo("Remind me to call my sister at six.", "Remind me to call my sister at six. Okay!", 0.8).ok


def test_answers_confirmations_and_short_turns_are_not_echo():
    assert check_echo("What is the capital of France?", "The capital of France is Paris.", 0.8).ok
    assert check_echo("I love hiking in the mountains on weekends.", "That sounds wonderful! Which mountains do "
                      "you like best?", 0.8).ok
    assert echo_score("Remind me to call my sister at 6 pm.", "Shall I remind you to call my sister at 6 pm?") == 0
    assert echo_score("Yes please.", "Yes please.") == 0  # under 4 words: not judged
    assert check_echo("A table for two.", "A table for 2. What time would you like to come? We are open from 5 "
                      "to 10 pm.", 0.8).ok
    assert not check_echo("A table for two.", "A table for two.", 0.8).ok
    assert check_echo("Can you check the weather in Oslo for today?", "Sorry. I can't check the weather in Oslo "
                      "for today.", 0.8).ok
    assert not check_echo("I don't like Mondays at all.", "You don't like Mondays at all.", 0.8).ok
    assert check_echo("Is it going to be sunny in Tokyo tomorrow?", "Yes, it is going to be sunny in Tokyo "
                      "tomorrow.", 0.8).ok
    assert not check_echo("Order me a large pepperoni pizza, please.", "Order a large pepperoni pizza.", 0.8).ok


@pytest.mark.parametrize("reply", [
    "I've sent the email to your boss.",
    "Done! Your pizza has been ordered.",
    "I'll remind you at six.",
    "Your table is booked for 7 pm.",
    "Okay, I have set a reminder for 6 pm.",
    "All set, the lights are off.",
])
def test_action_claims_are_found(reply):
    assert false_claims(reply), reply


@pytest.mark.parametrize("reply", [
    "Shall I remind you to call my sister at 6 pm?",
    "Sorry, I can't send emails.",
    "I have not booked anything yet.",
    "If you like, I can set a reminder for that.",
    "It will be sunny tomorrow in Paris.",
])
def test_questions_negations_and_offers_are_not_claims(reply):
    assert false_claims(reply) == [], reply


def test_a_claim_passes_only_when_a_tool_succeeded_this_turn():
    claim = "Done! Your table for 4 at 7:30 pm is booked."
    assert check_claims(claim, [ToolUse("c1", "book_table", ok=True)]).ok
    assert not check_claims(claim, []).ok
    assert not check_claims(claim, [ToolUse("c1", "book_table", ok=False)]).ok
    assert not check_claims(claim, [ToolUse("c1", "book_table")]).ok  # proposed, not run


# ---------------------------------------------------------------- one turn


def test_check_turn_runs_the_asked_checks_and_the_builtins():
    facts = TurnFacts(kind="say", user_words="What's the weather in Paris tomorrow?",
                      transcript="What's the weather in Paris tomorrow?",
                      reply="Tomorrow in Paris: light rain, 14 degrees.",
                      tools=[ToolUse("c1", "get_weather", {"city": "Paris", "day": "tomorrow"}, ok=True)],
                      state="assistant/main", voice_to_voice_ms=2100.0)
    expect = Expect(tools=[ToolExpect(name="get_weather", args={"city": "paris", "day": "tomorrow"})],
                    reply=ReplyExpect(number=14), max_voice_to_voice_ms=2500, state="main")
    checks = check_turn(facts, expect)
    assert [c.name for c in checks] == ["replied", "transcript_wer", "tool_called", "state", "reply_number",
                                        "voice_to_voice", "no_internal_text", "no_echo", "no_false_claims"]
    assert names_failed(checks) == []
    slow = check_turn(TurnFacts(**{**facts.__dict__, "voice_to_voice_ms": 4800.0}), expect)
    assert names_failed(slow) == ["voice_to_voice"]


def test_check_turn_fails_a_misheard_or_silent_turn_and_can_skip_builtins():
    facts = TurnFacts(kind="say", user_words="Seven thirty in the evening.", transcript="Several birds in the heaven.")
    assert names_failed(check_turn(facts, Expect())) == ["replied", "transcript_wer"]
    echo = TurnFacts(kind="type", user_words="I love hiking in the mountains.", reply="I love hiking in the mountains.")
    assert names_failed(check_turn(echo, Expect())) == ["no_echo"]
    assert names_failed(check_turn(echo, Expect(skip_checks=["no_echo"]))) == []
    assert names_failed(check_turn(TurnFacts(kind="type", user_words="Mm-hmm."), Expect(no_reply=True))) == []


def test_reply_audio_is_compared_with_agent_text_when_checked():
    facts = TurnFacts(kind="dtmf", user_words="", reply="Lovely, Japanese. How many people will be joining?",
                      audio_transcript="Lovely Japanese, how many people will be joining?")
    assert names_failed(check_turn(facts, Expect(), audio_checked=True)) == []
    garbled = TurnFacts(**{**facts.__dict__, "audio_transcript": "Lovely."})
    assert names_failed(check_turn(garbled, Expect(), audio_checked=True)) == ["reply_audio_wer"]
