"""A short run of bench/fuzz.py in CI: a few thousand hostile frames and a few hundred hostile SIP
datagrams against a real `voice serve` and `voice sip`, while a neighbour streams real speech.
Fails on any traceback in either process, a crashed session, a gateway that stopped answering,
or a neighbour that was no longer understood."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT
from speech_data import librivox_clips

sys.path.insert(0, str(ROOT / "bench"))
from fuzz import print_table, run

pytestmark = pytest.mark.e2e


def test_a_short_fuzz_storm_leaves_no_traceback_and_the_neighbour_understood(tmp_path):
    if not librivox_clips():
        pytest.skip("speech test data missing: apt-get install pocketsphinx-testdata")
    results = run(tmp_path, frames=3000, sip=300, connections=8, seed=20261206, clips=1, min_duration_s=15)
    print_table(results)
    assert results["frames_sent"] >= 3000 and results["sip_sent"] == 300
    assert results["server_tracebacks"] == 0 and results["gateway_tracebacks"] == 0, (
        "tracebacks in the logs under " + str(tmp_path))
    assert results["server_crashed_sessions"] == 0
    assert results["gateway_answers_options"]
    assert sum(results["error_codes"].values()) > 0 and "400" in results["sip_answers"]  # the storm was hostile
    calm, stormy = results["neighbour_baseline"], results["neighbour_under_fuzz"]
    assert stormy["exit_code"] == 0 and not stormy["errors"], stormy  # its one session lasted the storm
    assert stormy["wer"] <= max(0.15, calm["wer"] + 0.1), stormy["heard"]
