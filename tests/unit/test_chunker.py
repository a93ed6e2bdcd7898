"""TextChunker: where an LLM text stream is cut into speakable pieces, and what is read aloud."""

from __future__ import annotations

import pytest

from voice.tts.chunker import ChunkerSettings, TextChunker, clean_markdown


def chunk(text: str, step: int = 3, settings: ChunkerSettings | None = None) -> list[str]:
    """Feed `text` in deltas of `step` characters (like LLM tokens), then flush."""
    chunker = TextChunker(settings)
    pieces: list[str] = []
    for i in range(0, len(text), step):
        pieces += chunker.feed(text[i:i + step])
    return pieces + chunker.flush()


def test_first_piece_ends_early_at_a_comma_once_it_has_four_words() -> None:
    pieces = chunk("Well, the weather in Paris today, as far as I know, is sunny and warm.")
    assert pieces == ["Well, the weather in Paris today,", "as far as I know, is sunny and warm."]


def test_first_piece_does_not_end_at_a_comma_before_four_words() -> None:
    assert chunk("Sure, I can help with that.") == ["Sure, I can help with that."]


def test_later_pieces_are_whole_sentences_despite_commas() -> None:
    text = "Hello there. Tomorrow, in the morning, it will rain, then clear up. Bye."
    assert chunk(text) == ["Hello there.", "Tomorrow, in the morning, it will rain, then clear up.", "Bye."]


def test_the_first_piece_is_returned_as_soon_as_the_next_word_starts() -> None:
    chunker = TextChunker()
    assert chunker.feed("It is sunny today.") == []
    assert chunker.feed(" The") == ["It is sunny today."]


def test_question_and_exclamation_marks_cut_on_the_following_space() -> None:
    chunker = TextChunker()
    assert chunker.feed("Really? ") == ["Really?"]
    assert chunker.feed("Yes! ") == ["Yes!"]


def test_a_long_sentence_is_cut_at_a_clause_after_max_words() -> None:
    words = " ".join(f"W{i}" for i in range(30))
    pieces = chunk(f"Okay. {words}, and the end.")
    assert pieces == ["Okay.", f"{words},", "and the end."]


def test_text_without_any_boundary_is_cut_between_words_at_hard_max() -> None:
    words = [f"W{i}" for i in range(60)]
    pieces = chunk("Okay. " + " ".join(words), settings=ChunkerSettings(hard_max_words=50))
    assert pieces == ["Okay.", " ".join(words[:50]), " ".join(words[50:])]


def test_early_first_piece_can_be_switched_off() -> None:
    text = "Well, the weather in Paris today, as far as I know, is sunny."
    assert chunk(text, settings=ChunkerSettings(early_first_piece=False)) == [text]


@pytest.mark.parametrize("text", [
    "It costs 3.5 dollars and that is cheap.",
    "It costs $1,000 in total for everyone.",
    "The meeting is at 10:30 tomorrow in the hall.",
    "Dr. Smith will see you at noon today.",
    "Mr. and Mrs. Jones arrived late to the party.",
    "Bring fruit, e.g. apples or pears for everyone.",
    "Bring fruit, i.e. Apples from the market please.",
    "The U.S. economy grew quickly last year.",
    "Pack shirts, socks, etc. and bring them along.",
    "Visit https://example.com/path?a=1.5 for details.",
    "Write to joe.smith@mail.example.org for details.",
    "Wait...what did you just say to me there.",
    "It was good… maybe even great for all of us.",
    "Prices rose 5–10 percent over the year there.",
])
def test_no_cut_inside_numbers_abbreviations_urls_or_ellipses(text: str) -> None:
    assert chunk(text, settings=ChunkerSettings(early_first_piece=False)) == [text]


@pytest.mark.parametrize("step", [1, 2, 5, 100])
def test_the_pieces_do_not_depend_on_how_the_stream_is_split(step: int) -> None:
    text = "Dr. Smith paid $1,000.50 at 10:30. Then, e.g. later, he left! Was it fine? Yes."
    assert chunk(text, step=step) == ["Dr. Smith paid $1,000.50 at 10:30.", "Then, e.g. later, he left!",
                                      "Was it fine?", "Yes."]


def test_etc_at_the_end_of_a_sentence_cuts_before_a_capital() -> None:
    assert chunk("Bring socks, shirts, etc. Then we go.") == ["Bring socks, shirts, etc.", "Then we go."]


def test_ellipsis_followed_by_a_capital_ends_a_sentence() -> None:
    assert chunk("Well... I think so.") == ["Well...", "I think so."]


def test_bold_and_code_markers_are_removed() -> None:
    assert chunk("**Sure!** Run `ls -la` now.") == ["Sure!", "Run ls -la now."]


def test_headings_and_list_bullets_are_removed_and_each_line_is_a_piece() -> None:
    text = "## Options\n- apples\n* pears\n1. Book the table.\n2. Call Mr. Jones.\n"
    assert chunk(text) == ["Options", "apples", "pears", "Book the table.", "Call Mr. Jones."]


def test_emoji_are_removed_and_emoji_only_pieces_dropped() -> None:
    assert chunk("Great news 🎉! 👍\nSee you ✨ soon.") == ["Great news!", "See you soon."]


def test_links_keep_their_text() -> None:
    assert clean_markdown("See [the docs](https://x.io/a) now.") == "See the docs now."


def test_snake_case_underscores_stay_but_italic_underscores_go() -> None:
    assert clean_markdown("_Note_ the my_var name.") == "Note the my_var name."


def test_code_fence_lines_are_dropped() -> None:
    assert chunk("Here:\n```python\nprint(1)\n```\nDone.") == ["Here:", "print(1)", "Done."]


def test_flush_returns_the_unterminated_rest() -> None:
    chunker = TextChunker()
    assert chunker.feed("No period at the end") == []
    assert chunker.flush() == ["No period at the end"]


def test_flush_returns_nothing_for_only_whitespace_or_symbols() -> None:
    chunker = TextChunker()
    chunker.feed("  ** \n")
    assert chunker.flush() == []


def test_flush_resets_so_the_next_reply_gets_an_early_first_piece_again() -> None:
    chunker = TextChunker()
    chunker.feed("One sentence here. ")
    chunker.flush()
    assert chunker.feed("Well, the weather in Paris, ") == ["Well, the weather in Paris,"]


def test_reset_drops_buffered_text() -> None:
    chunker = TextChunker()
    chunker.feed("Half a sent")
    chunker.reset()
    assert chunker.flush() == []


def test_a_period_before_a_lower_case_word_does_not_end_the_sentence() -> None:
    # An unknown abbreviation ("approx.", "incl.") is followed by lower case; a real sentence end is not.
    assert chunk("Add incl. taxes and fees to it. Done.", settings=ChunkerSettings(early_first_piece=False)) == [
        "Add incl. taxes and fees to it.", "Done."]
