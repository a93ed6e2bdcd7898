"""The restaurant booking agent: the booking.yaml flow and its one tool, book_table (SQLite).

book_table is consequential: the flow's confirm state proposes it with the collected slots, the
agent asks "Shall I book it?", and only the guest's yes runs it. Bookings are keyed by the
session, so a retried or modified booking updates its row instead of adding one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from voice.agents.slots import ClockTime, spoken_time
from voice.agents.store import BookingStore
from voice.llm.tools import Tool, tool

FLOW = Path(__file__).with_name("booking.yaml")
#: Said after "Sorry, I can't do that." when asked about live data the agent has no tool for.
ABILITIES = "I can help you book a table at Trattoria Voce."
Cuisine = Literal["italian", "japanese", "indian", "mexican"]


def confirm_question(args: dict[str, Any]) -> str:
    people = "one person" if args["party_size"] == 1 else f"{args['party_size']} people"
    return (f"So that's a table for {people} at {spoken_time(args['time'])}, {args['cuisine'].title()} food. "
            "Shall I book it?")


def booking_tools(store: BookingStore, reference: str) -> list[Tool]:
    @tool(consequential=True, confirm=confirm_question, timeout_s=5.0)
    def book_table(cuisine: Cuisine, party_size: Annotated[int, Field(ge=1, le=12)], time: ClockTime) -> dict:
        """Book a table at Trattoria Voce.

        Args:
            cuisine: the kind of food
            party_size: number of people, 1 to 12
            time: arrival time, between 17:00 and 22:00
        """
        row = store.book(reference, cuisine, party_size, time)
        return {"booked": True, "booking_number": row["id"], "cuisine": cuisine, "party_size": party_size,
                "time": spoken_time(time)}

    return [book_table]
