"""SequenceStore: finished replies' llama.cpp sequences, kept within a byte budget, per call."""

from __future__ import annotations

import ctypes

import numpy as np

from voice.llm.llama import SavedSequence, SequenceStore, shared_prefix


def sequence(tokens: list[int], nbytes: int = 100) -> SavedSequence:
    return SavedSequence(np.asarray(tokens, dtype=np.intc), (ctypes.c_uint8 * nbytes)())


def test_the_sequence_sharing_most_of_the_prompt_is_found():
    store = SequenceStore(1000)
    store.put(("a", False), sequence([1, 2, 3, 4]))
    store.put(("b", True), sequence([1, 2, 9]))
    assert store.best([1, 2, 3, 4, 5, 6]) == (4, store.best([1, 2, 3, 4, 5, 6])[1])
    found, saved = store.best([1, 2, 9, 9])
    assert found == 3 and saved is not None and list(saved.tokens) == [1, 2, 9]
    assert store.best([7])[0] == 0


def test_a_conversation_keeps_one_sequence_per_tool_set_and_the_budget_drops_the_least_recent():
    store = SequenceStore(300)
    store.put(("a", False), sequence([1]))
    store.put(("a", False), sequence([1, 2]))  # replaces
    assert store.bytes == 100
    store.put(("a", True), sequence([5]))
    store.put(("b", False), sequence([7]))
    store.best([1, 2])  # a's plain sequence used: now the most recent
    store.put(("c", False), sequence([8]))  # over budget: ("a", True) goes, least recently used
    assert store.bytes == 300
    assert store.best([5])[0] == 0 and store.best([1, 2])[0] == 2
    store.put(("huge", False), sequence([9], nbytes=301))  # never fits: not kept, nothing evicted
    assert store.bytes == 300 and store.best([9])[0] == 0


def test_an_ended_call_is_forgotten():
    store = SequenceStore(1000)
    store.put(("a", False), sequence([1, 2]))
    store.put(("a", True), sequence([3, 4]))
    store.put(("warm-up", True), sequence([3]))
    store.forget("a")
    assert store.bytes == 100
    assert store.best([3, 4])[0] == 1  # the shared warm-up prefix stays


def test_shared_prefix():
    assert shared_prefix(np.asarray([1, 2, 3], dtype=np.intc), [1, 2, 4, 5]) == 2
    assert shared_prefix(np.asarray([1, 2], dtype=np.intc), [1, 2, 3]) == 2
    assert shared_prefix(np.asarray([], dtype=np.intc), [1]) == 0
