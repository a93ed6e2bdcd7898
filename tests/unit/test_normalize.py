"""Written text -> what the TTS says (voice/tts/normalize.py): a table of inputs and expected words."""

from __future__ import annotations

import pytest

from voice.tts.normalize import speakable

TABLE = [
    # numbers
    ("17 times 23 is 391.", "seventeen times twenty-three is three hundred and ninety-one."),
    ("Temperatures of 1,250 and 3.05.",
     "Temperatures of one thousand, two hundred and fifty and three point zero five."),
    ("It is -3 outside.", "It is minus three outside."),
    ("It takes 5-10 minutes.", "It takes five to ten minutes."),
    # ordinals and years
    ("The 21st of June.", "The twenty-first of June."),
    ("He was born in 1990.", "He was born in nineteen ninety."),
    # times
    ("Meet me at 18:00.", "Meet me at six p m."),
    ("At 6:30 pm or 7 a.m.", "At six thirty p m or seven a m."),
    ("At 7 a.m. tomorrow.", "At seven a m tomorrow."),
    ("At 9:05.", "At nine oh five a m."),
    ("At 12:00.", "At twelve noon."),
    ("Shall I remind you at 6 pm?", "Shall I remind you at six p m?"),
    # dates
    ("On 2026-12-05.", "On December fifth, twenty twenty-six."),
    ("On Dec 5th.", "On December fifth."),
    # currency
    ("That costs $5.50.", "That costs five dollars fifty cents."),
    ("About €1 or £3.20.", "About one euro or three pounds twenty pence."),
    ("It raised $1.5 million.", "It raised one point five million dollars."),
    # units and percentages
    ("It is 21°C in Paris.", "It is twenty-one degrees Celsius in Paris."),
    ("5 km away, 3.5 kg, 50% off.", "five kilometers away, three point five kilograms, fifty percent off."),
    ("Drive at 1 mph.", "Drive at one mile per hour."),
    # abbreviations and symbols
    ("Dr. Smith lives on Baker St. near St. Paul.", "Doctor Smith lives on Baker Street near Saint Paul."),
    ("Bring snacks, e.g. fruit, etc.", "Bring snacks, for example fruit, et cetera"),
    ("Rock & roll", "Rock and roll"),
    # e-mails, URLs, phone numbers
    ("Write to john.doe@example.com.", "Write to john dot doe at example dot com."),
    ("Visit https://www.example.com/help.", "Visit example dot com slash help."),
    ("Call 555-1234.", "Call five five five, one two three four."),
    # markdown and lists
    ("**Bold** and `code`", "Bold and code"),
    ("Steps:\n1. Boil water\n2. Add the egg", "Steps: Boil water. Add the egg."),
    ("- first item\n- second item", "first item. second item."),
    # nothing to do
    ("Hello there, how are you?", "Hello there, how are you?"),
]


@pytest.mark.parametrize("written, spoken", TABLE)
def test_written_text_becomes_speakable_words(written, spoken):
    assert speakable(written) == spoken


def test_no_digit_or_symbol_survives_in_a_typical_reply():
    reply = "Tomorrow in Paris: light rain, 14°C, 80% chance; book at 18:30 for $20 (2nd floor) & enjoy!"
    out = speakable(reply)
    assert not any(ch.isdigit() for ch in out) and not set("$%°&") & set(out), out
