"""Orpheus token layout: ids, redistribution to SNAC's layers, parsing of good and bad streams."""

from __future__ import annotations

import numpy as np

from voice.codecs.snac import layers_from_frames
from voice.tts.orpheus import (
    AUDIO_TOKEN_0,
    END_OF_HUMAN,
    END_OF_SPEECH,
    END_OF_TEXT,
    START_OF_AI,
    START_OF_HUMAN,
    START_OF_SPEECH,
    OrpheusFrameParser,
    allowed_audio_ids,
    audio_token_id,
    custom_token_ids,
    prompt_ids,
    to_snac_frame,
)


def frame_tokens(codes: list[int]) -> list[int]:
    return [audio_token_id(position, code) for position, code in enumerate(codes)]


def parse(tokens: list[int]) -> tuple[OrpheusFrameParser, list[np.ndarray]]:
    parser = OrpheusFrameParser()
    frames = [f for t in tokens if (f := parser.push(t)) is not None]
    return parser, frames


def test_audio_token_ids_use_a_4096_offset_per_position():
    assert audio_token_id(0, 0) == 128266  # <custom_token_10>
    assert audio_token_id(1, 0) == 128266 + 4096
    assert audio_token_id(6, 4095) == 128266 + 7 * 4096 - 1


def test_custom_token_text_maps_to_token_ids():
    assert custom_token_ids("<custom_token_10><custom_token_4106> x") == [128266, 128266 + 4096]


def test_positions_are_redistributed_to_snac_layers():
    # positions 0..6 carry 10..70: layer 0 <- 0; layer 1 <- 1, 4; layer 2 <- 2, 3, 5, 6
    assert to_snac_frame([10, 20, 30, 40, 50, 60, 70]).tolist() == [10, 20, 50, 30, 40, 60, 70]


def test_two_frames_fill_snac_layers_in_time_order():
    frames = np.stack([to_snac_frame([10, 20, 30, 40, 50, 60, 70]), to_snac_frame([11, 21, 31, 41, 51, 61, 71])])
    l0, l1, l2 = layers_from_frames(frames[None])
    assert l0.tolist() == [[10, 11]]
    assert l1.tolist() == [[20, 50, 21, 51]]
    assert l2.tolist() == [[30, 40, 60, 70, 31, 41, 61, 71]]


def test_parsed_tokens_come_out_as_snac_frames():
    _, frames = parse(frame_tokens([1, 2, 3, 4, 5, 6, 7]) + frame_tokens([8, 9, 10, 11, 12, 13, 14]))
    assert [f.tolist() for f in frames] == [[1, 2, 5, 3, 4, 6, 7], [8, 9, 12, 10, 11, 13, 14]]


def test_incomplete_frame_is_held_back():
    parser, frames = parse(frame_tokens([1, 2, 3, 4, 5, 6, 7]) + frame_tokens([1, 2, 3, 4, 5, 6, 7])[:6])
    assert len(frames) == 1
    assert parser.pending_tokens == 6


def test_non_audio_token_is_skipped_and_counted():
    tokens = frame_tokens([1, 2, 3, 4, 5, 6, 7])
    parser, frames = parse([*tokens[:3], 500, *tokens[3:]])
    assert len(frames) == 1
    assert parser.bad_tokens == 1


def test_out_of_range_ids_are_bad_tokens():
    parser, frames = parse([AUDIO_TOKEN_0 - 1, AUDIO_TOKEN_0 + 7 * 4096, 10**9, -5])
    assert frames == []
    assert parser.bad_tokens == 4


def test_wrong_position_drops_the_partial_frame_and_resyncs():
    good = frame_tokens([1, 2, 3, 4, 5, 6, 7])
    parser, frames = parse([*good[:3], audio_token_id(5, 9), *good[4:], *good])
    assert [f.tolist() for f in frames] == [to_snac_frame([1, 2, 3, 4, 5, 6, 7]).tolist()]
    assert parser.dropped_frames == 1
    assert parser.bad_tokens == 1 + 3  # the misplaced token, then positions 4..6 with no frame open


def test_early_position_zero_starts_a_new_frame():
    good = frame_tokens([1, 2, 3, 4, 5, 6, 7])
    parser, frames = parse([*good[:3], *good])
    assert len(frames) == 1
    assert parser.dropped_frames == 1


def test_end_of_speech_ends_without_counting_as_bad():
    parser, _ = parse([*frame_tokens([1, 2, 3, 4, 5, 6, 7]), END_OF_SPEECH])
    assert parser.ended
    assert parser.bad_tokens == 0


def test_constraint_allows_only_the_next_positions_codes():
    ids = allowed_audio_ids(3)
    assert ids.min() == audio_token_id(3, 0)
    assert ids.max() == audio_token_id(3, 4095)
    assert len(ids) == 4096


def test_constraint_allows_end_of_speech_only_at_a_frame_boundary_after_a_frame():
    assert END_OF_SPEECH not in allowed_audio_ids(0)
    assert END_OF_SPEECH in allowed_audio_ids(7)
    assert END_OF_SPEECH not in allowed_audio_ids(8)


def test_prompt_wraps_voice_and_text_in_orpheus_markers():
    text_ids = [128000, 83, 84]  # <|begin_of_text|> "tara: ..."
    assert prompt_ids(text_ids) == [START_OF_HUMAN, 128000, 83, 84, END_OF_TEXT, END_OF_HUMAN, START_OF_AI,
                                    START_OF_SPEECH]
