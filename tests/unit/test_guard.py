"""SpeechGuard: internal text, echoes and claimed actions are never spoken (voice/llm/guard.py)."""

from __future__ import annotations

import pytest

from voice.llm.guard import SpeechGuard, claims_action

#: What the shipped agent really said aloud before the guard (quoted in issue 11), and variants.
MEASURED_LEAKS = [
    "Call the tool again with correct arguments, or ask the user for the missing detail.",
    "There is no tool 'read verse', and none is needed. Answer the user directly in one or two short sentences.",
    "Sorry, but I can't do this, and offer to try again.",
    'Tool call get_weather(city="Paris", day="tomorrow") was not valid: the user did not say city \'Paris\'; '
    "do not guess.",
    "Please call the tool again with the correct arguments.",
    "I should ask the user for the missing detail.",
    'Result of get_weather(city="Paris"): {"condition": "sunny"}',
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "The get_weather result says it is sunny.",
    "Write your reply to the user now, using this result.",
]


def run(guard: SpeechGuard, deltas: list[str]) -> str:
    return "".join(guard.feed(d) for d in deltas) + guard.finish()


@pytest.mark.parametrize("leak", MEASURED_LEAKS)
def test_internal_text_the_agent_really_spoke_is_held_back(leak):
    guard = SpeechGuard(user_text="What's the weather in Paris tomorrow?")
    spoken = run(guard, [leak[i:i + 5] for i in range(0, len(leak), 5)])
    # at most a harmless first clause of it is heard ("Sorry, but I can't do this,"), never the note
    assert spoken == "" or (leak.startswith(spoken) and guard.verdict(spoken) is None), spoken
    assert guard.dropped and {v for v, _ in guard.dropped} == {"internal"}
    assert " ".join(sentence for _, sentence in guard.dropped) in leak


def test_a_sentence_copied_from_the_prompt_it_was_given_is_held_back():
    rules = "Keep the booking polite and mention the cancellation policy of forty eight hours."
    guard = SpeechGuard(internal=[rules], user_text="Can I book a table?")
    spoken = run(guard, ["Sure! ", "Keep the booking polite and mention the cancellation policy. ", "Which day?"])
    assert spoken == "Sure! Which day?"


@pytest.mark.parametrize("reply", [
    "The capital of France is Paris.",
    "It is sunny in Rome today, with a high of 27 degrees.",
    "Here's a joke: why did the cat sit on the computer? To keep an eye on the mouse!",
    "I'm a friendly voice assistant, happy to help.",
    "You're welcome!",
    "Boil the egg for about nine minutes, then cool it in cold water.",
])
def test_ordinary_answers_pass_unchanged(reply):
    guard = SpeechGuard(internal=["You are a friendly voice assistant. Everything you write is spoken aloud."],
                        user_text="Is it sunny in Rome today?")
    assert run(guard, [reply]) == reply and guard.dropped == []


@pytest.mark.parametrize("user, reply", [
    ("What is seventeen times twenty-three?", "Seventeen times twenty-three."),
    ("Remind me to call my sister at six pm.", "Remind me to call my sister at six pm."),
    ("I love hiking in the mountains on weekends.", "You love hiking in the mountains on weekends."),
])
def test_the_users_words_read_back_are_an_echo(user, reply):
    guard = SpeechGuard(user_text=user)
    assert run(guard, [reply]) == "" and guard.dropped[0][0] == "echo"


def test_a_restating_answer_to_a_yes_no_question_is_not_an_echo():
    guard = SpeechGuard(user_text="Is it sunny in Rome today?")
    assert run(guard, ["Yes, it is sunny in Rome today."]) == "Yes, it is sunny in Rome today."


@pytest.mark.parametrize("claim", [
    "I've set a reminder for 6 pm.", "I have booked your table.", "Your reminder is set for tomorrow.",
    "I'll remind you to call your sister.", "I've sent the email to your boss.", "Done, it's booked.",
    "I’ve added it to your list.", "The table has been reserved.",
])
def test_a_claimed_action_without_a_successful_action_tool_is_held_back(claim):
    guard = SpeechGuard(user_text="Remind me to call my sister.")
    assert run(guard, ["Sure! ", claim]) == "Sure! " and guard.dropped == [("claim", claim)]


def test_a_claim_is_spoken_when_the_action_really_happened():
    guard = SpeechGuard(user_text="Yes.", acted=True)
    assert run(guard, ["I've set a reminder for 6 pm."]) == "I've set a reminder for 6 pm."


@pytest.mark.parametrize("text", ["Shall I book it?", "I can set a reminder for you.", "I can't send emails.",
                                  "Would you like me to set one?"])
def test_offers_questions_and_refusals_are_not_claims(text):
    assert not claims_action(text)


def test_nothing_is_released_before_its_sentence_is_complete():
    guard = SpeechGuard(user_text="hello")
    assert guard.feed("It is sunny") == ""
    assert guard.feed(". The tool says so. Next") == "It is sunny. "  # the second sentence talks of tools
    assert guard.finish() == "Next"


def test_a_clause_is_released_before_its_sentence_ends_once_it_has_four_words():
    guard = SpeechGuard(user_text="What is the capital of France?")
    assert guard.feed("Well, the capital of France,") == ""   # no whitespace after the comma yet
    assert guard.feed(" as you may know") == "Well, the capital of France, "
    assert guard.feed(", is Paris.") == "as you may know, "
    assert guard.finish() == "is Paris."
