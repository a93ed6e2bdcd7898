"""Times and days from the user's words with a fixed clock, and tool arguments grounded on them."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from voice.agents import assistant
from voice.agents.dates import parse_clock, parse_day, spoken_day, strip_when, what_to_do
from voice.agents.store import ReminderStore
from voice.llm.grounding import ground
from voice.llm.tools import ToolCall

NOW = datetime(2026, 12, 2, 14, 5)  # a Wednesday afternoon


@pytest.mark.parametrize("words, hhmm", [
    ("remind me at 6 pm", "18:00"), ("at six p.m.", "18:00"), ("at 6pm", "18:00"),
    ("half past seven tonight", "19:30"), ("at noon", "12:00"), ("at midnight", "00:00"),
    ("quarter to nine", "20:45"),            # 8:45 am has passed at 14:05: the next one is the evening
    ("at 7 in the morning", "07:00"), ("at 7:15 am", "07:15"), ("at 07:30", "07:30"),
    ("at six", "18:00"), ("at 3", "15:00"), ("at 18:30", "18:30"), ("at eight in the evening", "20:00"),
    ("I am leaving at 9", "21:00"),          # "I am" is not "am"
])
def test_clock_times_with_the_half_of_the_day_settled(words, hhmm):
    assert parse_clock(words, NOW) == hhmm


def test_a_bare_hour_on_another_day_means_daytime():
    tomorrow = date(2026, 12, 3)
    assert parse_clock("tomorrow at 9", NOW, tomorrow) == "09:00"
    assert parse_clock("tomorrow at 3", NOW, tomorrow) == "15:00"


def test_words_without_a_time_give_none():
    assert parse_clock("remind me to call my sister", NOW) is None


@pytest.mark.parametrize("words, day", [
    ("tomorrow", date(2026, 12, 3)), ("the day after tomorrow", date(2026, 12, 4)), ("tonight", date(2026, 12, 2)),
    ("next Friday", date(2026, 12, 4)), ("on Friday", date(2026, 12, 4)), ("on Wednesday", date(2026, 12, 2)),
    ("next Wednesday", date(2026, 12, 9)), ("in 3 days", date(2026, 12, 5)), ("in a week", date(2026, 12, 9)),
    ("on the 5th", date(2026, 12, 5)), ("on the 1st", date(2027, 1, 1)), ("December 25th", date(2026, 12, 25)),
    ("the twenty first of January", date(2027, 1, 21)),
])
def test_days_relative_to_the_clock(words, day):
    assert parse_day(words, NOW) == day


@pytest.mark.parametrize("text, left", [
    ("call my sister at 6 pm", "call my sister"), ("buy milk on Friday at half past seven", "buy milk"),
    ("meet Anna at the station at 6", "meet Anna at the station"), ("call Bob at 7 P.M. tomorrow", "call Bob"),
])
def test_the_when_is_taken_out_of_a_reminders_text(text, left):
    assert strip_when(text) == left


def test_days_are_said_the_way_people_say_them():
    assert [spoken_day(date(2026, 12, d), NOW) for d in (2, 3, 4)] == ["today", "tomorrow", "on Friday"]
    assert spoken_day(date(2026, 12, 25), NOW) == "on Friday, December 25"


@pytest.fixture
def reminders(tmp_path):
    add, _ = assistant.reminder_tools(ReminderStore(tmp_path / "r.sqlite3"), "u", lambda: NOW)
    return add


def test_the_users_pm_wins_over_the_models_am(reminders):
    call = ToolCall("1", "add_reminder", {"text": "call my sister at 6 pm", "time": "06:00"})
    grounded, missing = ground(reminders, call, "Remind me to call my sister at 6 pm.", NOW)
    assert missing is None and grounded.arguments["time"] == "18:00" and grounded.arguments["day"] == "2026-12-02"
    checked = reminders.validate(grounded.arguments)
    assert reminders.confirmation(checked) == "Shall I remind you to call your sister at 6 pm?"


def test_a_time_already_past_today_is_tomorrow(reminders):
    call = ToolCall("1", "add_reminder", {"text": "water the plants", "time": "08:00"})
    grounded, _ = ground(reminders, call, "Remind me to water the plants at 8 am.", NOW)
    assert grounded.arguments["day"] == "2026-12-03"
    assert reminders.confirmation(reminders.validate(grounded.arguments)) == \
        "Shall I remind you to water the plants tomorrow at 8 am?"


def test_next_friday_is_kept_and_said(reminders):
    call = ToolCall("1", "add_reminder", {"text": "renew my passport", "time": "09:00"})
    grounded, _ = ground(reminders, call, "Remind me next Friday at 9 am to renew my passport.", NOW)
    assert grounded.arguments["day"] == "2026-12-04"
    question = reminders.confirmation(reminders.validate(grounded.arguments))
    assert question == "Shall I remind you to renew your passport on Friday at 9 am?"


def test_a_time_the_user_never_said_is_not_taken_from_the_model(reminders):
    call = ToolCall("1", "add_reminder", {"text": "call mom", "time": "14:00"})
    grounded, missing = ground(reminders, call, "Remind me to call mom.", NOW)
    assert missing == "time" and "time" not in grounded.arguments


def test_a_confirmation_never_names_two_times(reminders):
    for said in ("Remind me to call my sister at 6 pm.", "Remind me at six in the evening to call my sister.",
                 "Set a reminder for 7:15 am to go for a run."):
        call = ToolCall("1", "add_reminder", {"text": said.split("to ", 1)[1], "time": "06:00"})
        grounded, _ = ground(reminders, call, said, NOW)
        question = reminders.confirmation(reminders.validate(grounded.arguments))
        assert len([w for w in question.split() if w in ("am", "pm", "am?", "pm?")]) == 1, question


@pytest.mark.parametrize("said, what", [
    ("Remind me at noon to call the dentist.", "call the dentist"),
    ("Can you remind me at eight in the evening to water the plants?", "water the plants"),
    ("Remind me next Friday at 9 am to renew my passport.", "renew my passport"),
    ("Remind me tomorrow.", None),
])
def test_what_a_reminder_is_for_comes_from_the_users_words(said, what):
    assert what_to_do(said) == what


def test_the_models_retelling_of_the_reminder_is_replaced_by_the_users_words(reminders):
    call = ToolCall("1", "add_reminder", {"text": "Call my sister", "time": "12:00"})  # copied from an example
    grounded, _ = ground(reminders, call, "Remind me at noon to call the dentist.", NOW)
    assert grounded.arguments["text"] == "call the dentist" and grounded.arguments["time"] == "12:00"
