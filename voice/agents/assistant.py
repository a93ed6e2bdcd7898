"""The general assistant: answers questions, checks the weather (a local table: the server may
have no internet) and keeps reminders (SQLite). Setting a reminder is consequential: the user
hears "Shall I remind you to ...?" and only a yes stores it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from voice.agents.slots import ClockTime, spoken_time
from voice.agents.store import ReminderStore
from voice.llm.tools import Tool, ToolError, tool

FLOW = Path(__file__).with_name("assistant.yaml")
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


@tool(timeout_s=2.0, triggers=WEATHER_TRIGGERS, grounded=("city",))
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
        raise ToolError(f"no forecast for {city}; forecasts exist for {known}")
    condition, high, low = table[day]
    return {"city": city.title(), "day": day, "condition": condition, "high_celsius": high, "low_celsius": low}


def reminder_tools(store: ReminderStore, user: str) -> list[Tool]:
    def question(args: dict[str, Any]) -> str:
        what = args["text"].rstrip(".")
        return f"Shall I remind you to {what[:1].lower() + what[1:]} at {spoken_time(args['time'])}?"

    @tool(consequential=True, confirm=question, triggers=REMINDER_TRIGGERS)
    def add_reminder(text: str, time: ClockTime) -> dict:
        """Save a reminder for the user.

        Args:
            text: what to remind the user of, e.g. call my sister
            time: when, as HH:MM (24-hour clock)
        """
        saved = store.add(user, text, time)
        return {"saved": True, "text": saved["text"], "time": spoken_time(saved["time"])}

    @tool(triggers=REMINDER_TRIGGERS)
    def list_reminders() -> dict:
        """List the user's saved reminders."""
        items = store.of(user)
        return {"count": len(items), "reminders": [f"{r['text']} at {spoken_time(r['time'])}" for r in items]}

    return [add_reminder, list_reminders]
