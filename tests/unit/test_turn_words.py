"""Backchannel words and named timers: the small pieces the turn controller decides with."""

from __future__ import annotations

import asyncio

import pytest

from voice.pipeline.settings import BACKCHANNELS
from voice.pipeline.timers import Timers
from voice.pipeline.words import is_backchannel, words


@pytest.mark.parametrize("text", ["Mm-hmm.", "mm hmm", "Yeah.", "Yeah, okay.", "Right, right.", "Uh-huh.",
                                  "I see.", "Hmmmm.", "Ohhh.", "OK", "Got it.", "Sure, sure."])
def test_backchannels_are_recognised(text):
    assert is_backchannel(text, BACKCHANNELS)


@pytest.mark.parametrize("text", ["Stop.", "Wait, what?", "Yes.", "No.", "Okay, but what about Tuesday?",
                                  "Go", "I see a problem", "Right, tell me the price"])
def test_words_that_take_the_turn_are_not_backchannels(text):
    assert not is_backchannel(text, BACKCHANNELS)


def test_a_sound_without_words_counts_as_a_backchannel():
    assert is_backchannel("", BACKCHANNELS) and is_backchannel(" ... ", BACKCHANNELS)


def test_words_drop_punctuation_and_keep_hyphens_and_apostrophes():
    assert words("Mm-hmm, it's FINE.") == ["mm-hmm", "it's", "fine"]


def test_a_rearmed_timer_fires_once_with_its_new_data_and_is_then_spent():
    async def run():
        queue: asyncio.Queue = asyncio.Queue()
        timers = Timers(queue)
        timers.arm("silence", 0.01, data="first")
        timers.arm("silence", 0.05, data="second")  # replaces the first
        event = await asyncio.wait_for(queue.get(), 1)
        await asyncio.sleep(0.06)
        return timers.take(event), timers.take(event), queue.empty()

    first, again, nothing_more = asyncio.run(run())
    assert first == (True, "second") and again == (False, None) and nothing_more


def test_a_disarmed_timer_never_fires():
    async def run():
        queue: asyncio.Queue = asyncio.Queue()
        timers = Timers(queue)
        timers.arm("overlap", 0.01)
        timers.disarm("overlap")
        await asyncio.sleep(0.05)
        return queue.empty()

    assert asyncio.run(run())
