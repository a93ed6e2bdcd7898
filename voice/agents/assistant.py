"""The general assistant: answers questions, checks the weather (a local table: the server may
have no internet) and keeps reminders (SQLite). Setting a reminder is consequential: the user
hears "Shall I remind you to ...?" and only a yes stores it. Weather and reminder results are
spoken from templates (`say`): no second LLM round, nothing for the model to misread."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from voice.agents.dates import CalendarDay, Clock, WhatText, spoken_day
from voice.agents.slots import ClockTime, spoken_time
from voice.agents.store import ReminderStore
from voice.llm.tools import Tool, ToolError, tool

FLOW = Path(__file__).with_name("assistant.yaml")
#: Said after "Sorry, I can't do that." when asked to act in the world (send, call, order, ...).
ABILITIES = "I can tell you the weather forecast and set reminders for you."
#: Word beginnings ("rain" also finds "raining"). Not a bare "cold" or "hot": "cold-hearted", "hot tea".
WEATHER_TRIGGERS = ("weather", "rain", "sunny", "temperature", "forecast", "umbrella", "snow", "wind", "degrees",
                    "cloud", "storm", "jacket", "how hot", "how cold", "how warm")
REMINDER_TRIGGERS = ("remind", "reminder", "don't let me forget", "do not let me forget")

#: (condition, high °C, low °C) for today and tomorrow: a fixed table so answers can be checked.
WEATHER: dict[str, dict[str, tuple[str, int, int]]] = {
    "paris": {"today": ("sunny", 21, 12), "tomorrow": ("light rain", 14, 8)},
    "london": {"today": ("cloudy", 16, 9), "tomorrow": ("heavy rain", 13, 8)},
    "berlin": {"today": ("light rain", 15, 7), "tomorrow": ("sunny", 19, 9)},
    "new york": {"today": ("sunny", 25, 17), "tomorrow": ("thunderstorms", 22, 16)},
    "tokyo": {"today": ("cloudy", 23, 18), "tomorrow": ("sunny", 26, 19)},
    "madrid": {"today": ("sunny", 30, 18), "tomorrow": ("sunny", 31, 19)},
    "rome": {"today": ("sunny", 27, 16), "tomorrow": ("cloudy", 24, 15)},
    "sydney": {"today": ("windy", 18, 11), "tomorrow": ("showers", 17, 12)},
}


def weather_line(result: dict[str, Any]) -> str:
    """"Tomorrow in Paris: light rain, with a high of 14 and a low of 8 degrees Celsius." """
    return (f"{result['day'].title()} in {result['city']}: {result['condition']}, with a high of "
            f"{result['high_celsius']} and a low of {result['low_celsius']} degrees Celsius.")


@tool(timeout_s=2.0, triggers=WEATHER_TRIGGERS, grounded=("city",), say=weather_line,
      questions={"city": "Which city would you like the weather for?"})
def get_weather(city: str, day: Literal["today", "tomorrow"] = "today") -> dict:
    """Weather forecast for a city, today or tomorrow.

    Args:
        city: the city name, e.g. Paris
        day: today or tomorrow
    """
    key = " ".join(city.lower().replace(",", " ").split())
    table = WEATHER.get(key) or next((v for k, v in WEATHER.items() if k in key), None)
    if table is None:
        known = ", ".join(c.title() for c in WEATHER)
        raise ToolError(f"I have no forecast for {city.strip().title()}. I only have forecasts for {known}")
    condition, high, low = table[day]
    return {"city": city.title(), "day": day, "condition": condition, "high_celsius": high, "low_celsius": low}


_PERSON = {"my": "your", "me": "you", "i": "you", "mine": "yours", "myself": "yourself", "i'm": "you're",
           "our": "your", "us": "you", "we": "you"}


def as_told(text: str) -> str:
    """The user's words said back to them: "call my sister" -> "call your sister"."""
    return re.sub(r"[\w']+", lambda m: _PERSON.get(m.group().lower(), m.group()), text)


def reminder_tools(store: ReminderStore, user: str, clock: Clock = datetime.now) -> list[Tool]:
    def when(args: dict[str, Any]) -> str:
        day = date.fromisoformat(args["day"]) if args.get("day") else None
        at = f"at {spoken_time(args['time'])}"
        return f"{spoken_day(day, clock())} {at}" if day is not None and day != clock().date() else at

    def what(args: dict[str, Any]) -> str:
        text = as_told(args["text"].rstrip("."))
        return text[:1].lower() + text[1:]

    @tool(consequential=True, confirm=lambda args: f"Shall I remind you to {what(args)} {when(args)}?",
          triggers=REMINDER_TRIGGERS, say=lambda r: f"Done. I'll remind you to {what(r)} {when(r)}.",
          questions={"time": "At what time should I remind you?"})
    def add_reminder(text: WhatText, time: ClockTime, day: CalendarDay | None = None) -> dict:
        """Save a reminder for the user.

        Args:
            text: what to remind the user of, in the user's words
            time: when, as HH:MM (24-hour clock)
            day: the day, YYYY-MM-DD (leave out for the next time it is that time)
        """
        saved = store.add(user, text, time, day)
        return {"saved": True, "text": saved["text"], "time": saved["time"], "day": saved["day"]}

    def listing(result: dict[str, Any]) -> str:
        items = result["reminders"]
        if not items:
            return "You have no reminders."
        head = "You have one reminder: " if len(items) == 1 else f"You have {len(items)} reminders: "
        return head + (", and ".join([", ".join(items[:-1]), items[-1]]) if len(items) > 1 else items[0]) + "."

    @tool(triggers=REMINDER_TRIGGERS, say=listing)
    def list_reminders() -> dict:
        """List the user's saved reminders."""
        items = store.of(user)
        return {"count": len(items), "reminders": [f"{as_told(r['text'])} {when(r)}" for r in items]}

    return [add_reminder, list_reminders]
