"""The browser client (web/) in real headless Chromium against the real server.

Chromium's fake microphone plays a WAV made from Piper speech: a question, a long silence while
the reply plays, a request for a long story, and then words spoken over the story (barge-in).
The page captures it with an AudioWorklet, encodes Opus with WebCodecs, and plays the agent's
reply through its playback worklet; `window.voiceStats` exposes what happened.
Recipe and gotchas: shared/notes/peers.md §2 (fake mic at 44.1 kHz, `%noloop`, localhost only).
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from conftest import start_server
from piper_speech import synthesize
from speech_data import wer

from voice.codecs.resample import resample

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
RATE_HZ = 48000
QUESTION = "What is the capital of France?"
STORY = "Tell me a long story about a dragon."
BARGE_IN = "Stop please. Thank you, that is enough for now."
# (text or None for silence, seconds of silence): the fake mic's script. The gaps are long enough
# for replies on a busy 2-core machine (up to 7.5 s voice to voice measured with Chromium on the
# same cores); the story reply lasts far longer than the 13 s before the barge-in.
SCRIPT: tuple[tuple[str | None, float], ...] = (
    (None, 1.5), (QUESTION, 0), (None, 14.0), (STORY, 0), (None, 13.0), (BARGE_IN, 0), (None, 10.0))
SILENCE: tuple[tuple[str | None, float], ...] = ((None, 30.0),)
TOKEN = "s3cret-token"


def _chromium_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"needs Debian chromium at {CHROMIUM} (scripts/install.sh --test)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs the Python playwright package (scripts/install.sh --test)"
    return None


if reason := _chromium_missing():
    pytestmark = [pytestmark, pytest.mark.skip(reason=reason)]


def speech_48k(text: str) -> np.ndarray:
    audio, rate = synthesize(text)
    return resample(audio.astype(np.float32) / 32768, rate, RATE_HZ)


def fake_mic_wav(folder: Path, script=SCRIPT) -> Path:
    """48 kHz mono WAV: Chromium resamples it to its 44.1 kHz fake device without loss of words."""
    parts = [speech_48k(text) if text else np.zeros(int(seconds * RATE_HZ), np.float32) for text, seconds in script]
    path = folder / "fake-mic.wav"
    sf.write(str(path), np.concatenate(parts) * 0.8, RATE_HZ, subtype="PCM_16")
    return path


def chromium_args(wav: Path, allow_mic: bool = True) -> list[str]:
    """Headless Chromium whose fake microphone plays `wav` once; without `allow_mic` the
    permission is refused (headless has no prompt to accept)."""
    allow = ["--use-fake-ui-for-media-stream"] if allow_mic else []
    return ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update",
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            *allow, "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required"]


class Tab:
    """One page of the browser, with its console kept for failure messages."""

    def __init__(self, page):
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def open(self, url: str) -> None:
        """Load the client and press Connect (a real click: a user gesture, as audio needs)."""
        self.page.goto(url)
        self.page.get_by_role("button", name="Connect").click()

    def stats(self) -> dict[str, Any]:
        return self.page.evaluate("JSON.parse(JSON.stringify(window.voiceStats))")

    def problem(self) -> str:
        return self.page.locator("#problem-text").inner_text()

    def wait_for(self, condition_js: str, timeout_s: float, what: str) -> None:
        try:
            self.page.wait_for_function(condition_js, timeout=timeout_s * 1000, polling=100)
        except Exception as e:  # playwright's TimeoutError: say what we were waiting for
            raise AssertionError(f"timed out waiting for {what}\nstats: {self.stats()}\n"
                                 f"console: {self.console[-20:]}") from e


class Browser:
    """One headless Chromium with a fresh profile whose fake microphone plays `wav`."""

    def __init__(self, wav: Path, allow_mic: bool = True):
        from playwright.sync_api import sync_playwright

        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.playwright = sync_playwright().start()
        self.context = self.playwright.chromium.launch_persistent_context(
            self.profile, executable_path=str(CHROMIUM), headless=True, args=chromium_args(wav, allow_mic),
            chromium_sandbox=False, viewport={"width": 1360, "height": 900})
        self.tab = Tab(self.context.pages[0])

    def new_tab(self) -> Tab:
        return Tab(self.context.new_page())

    def close(self) -> None:
        self.context.close()
        self.playwright.stop()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def agent_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("browser"), env={"VOICE_LLM__TEMPERATURE": "0"})
    yield srv
    srv.stop()


def summary(stats: dict[str, Any]) -> dict[str, Any]:
    """The numbers worth reporting, ms from the page's clock (performance.now())."""
    finals = [e["at"] for e in stats["events"] if e["type"] == "transcript_final"]
    stopped = [e["at"] for e in stats["events"] if e["type"] == "speech_stopped"]
    interrupted_at = event_time(stats, "interrupted")
    barge_start = max(e["at"] for e in stats["events"] if e["type"] == "speech_started" and e["at"] <= interrupted_at)
    return {
        "connect_to_first_final_ms": round(finals[0] - stats["connectedAt"]),
        "speech_stopped_to_final_ms": round(finals[0] - stopped[0]),
        "speech_stopped_to_first_audible_reply_ms": round(stats["playbackStarts"][0] - stopped[0]),
        "barge_in_speech_started_to_interrupted_ms": round(interrupted_at - barge_start),
        "interrupted_to_flush_confirmed_ms": [round(v, 1) for v in stats["flushLatenciesMs"]],
        "samples_played": stats["samplesPlayed"], "seconds_played": round(stats["samplesPlayed"] / RATE_HZ, 2),
        "samples_discarded_by_flush": stats["discardedSamples"], "underruns": stats["underruns"],
        "frames_sent": stats["framesSent"], "frames_received": stats["framesReceived"],
        "marks_sent": stats["marksSent"], "rtt_ms": stats["rttMs"],
        "played_ms_at_cut": stats["interruptions"][0]["played_ms"],
        "turn_metrics": [t["stages_ms"] for t in stats["turnMetrics"]],
        "finals": stats["finals"], "agent_texts": stats["agentTexts"],
    }


@pytest.fixture(scope="module")
def conversation(agent_server, tmp_path_factory, output_dir) -> dict[str, Any]:
    """One spoken visit to the page: question, answer, story, barge-in. Returns the page's stats."""
    browser = Browser(fake_mic_wav(tmp_path_factory.mktemp("mic")))
    tab = browser.tab
    try:
        tab.open(f"{agent_server.http}/")
        tab.wait_for("window.voiceStats.sessionId !== null", 30, "READY")
        tab.wait_for("window.voiceStats.finals.length >= 1", 60, "the first final transcript")
        tab.wait_for("window.voiceStats.interruptions.length >= 1 && window.voiceStats.flushes >= 1", 90,
                     "the barge-in (interrupted event and playback flush)")
        # let the reply to the barge-in utterance arrive, so the screenshot shows a whole visit
        tab.wait_for("window.voiceStats.turnMetrics.length >= 3", 40, "the reply after the barge-in")
        tab.page.wait_for_timeout(1500)
        shots = output_dir / "browser"
        shots.mkdir(exist_ok=True)
        tab.page.screenshot(path=str(shots / "conversation.png"), full_page=True)
        tab.page.set_viewport_size({"width": 390, "height": 844})  # a phone: the layout stacks
        tab.page.screenshot(path=str(shots / "conversation-narrow.png"), full_page=True)
        stats = tab.stats()
        cut_bubbles = tab.page.evaluate("""[...document.querySelectorAll('.bubble.agent.cut')].map(b => ({
            text: b.querySelector('.text').textContent,
            unheard: b.querySelector('.unheard')?.textContent ?? null}))""")
        (shots / "conversation.json").write_text(json.dumps(summary(stats), indent=2))
    finally:
        browser.close()  # before the tests run: a second sync Playwright cannot start while one lives
    return {"stats": stats, "console": tab.console, "server_log": agent_server.log(), "cut_bubbles": cut_bubbles}


def event_time(stats: dict, kind: str, after: float = 0.0) -> float:
    return next(e["at"] for e in stats["events"] if e["type"] == kind and e["at"] >= after)


def test_the_page_connects_with_opus(conversation):
    stats = conversation["stats"]
    assert stats["sessionId"], stats
    assert stats["codec"] == "opus"
    assert stats["framesSent"] > 100, "the microphone's Opus packets did not go out"
    assert "opus/48000" in conversation["server_log"]


def test_the_spoken_question_appears_as_a_final_transcript(conversation):
    finals = conversation["stats"]["finals"]
    assert wer(QUESTION, finals[0]) <= 0.25, finals


def test_the_reply_audio_is_decoded_and_played(conversation):
    stats = conversation["stats"]
    assert stats["framesReceived"] > 50
    assert stats["samplesDecoded"] >= stats["framesReceived"] * 960 * 0.9
    assert stats["samplesPlayed"] > 0.5 * RATE_HZ, stats["samplesPlayed"]
    assert "paris" in " ".join(stats["agentTexts"]).lower(), stats["agentTexts"]


def test_playback_position_is_reported_to_the_server(conversation):
    stats = conversation["stats"]
    assert stats["marksSent"] > 5
    assert stats["lastPlaybackMark"] > 0.5 * RATE_HZ


def test_barge_in_stops_the_agent_at_once_and_flushes_playback(conversation):
    """The server pauses the agent's audio min_speech_ms into the user's speech (to find out whether
    it is a backchannel) and cuts it once there are words: the audio must stop arriving soon after
    the speech began, and the page flushes whatever it still holds when the cut comes."""
    stats = conversation["stats"]
    interrupted = stats["interruptions"][0]
    assert interrupted["played_ms"] > 500, interrupted  # the story was audible before the cut
    assert interrupted["reason"] == "barge_in", interrupted
    cut_at = event_time(stats, "interrupted")
    speech_at = max(e["at"] for e in stats["events"] if e["type"] == "speech_started" and e["at"] <= cut_at)
    assert stats["audioBeforeCuts"][0] - speech_at < 400, "the agent's audio went on over the user's speech"
    assert stats["flushes"] >= 1
    assert stats["flushLatenciesMs"] and stats["flushLatenciesMs"][0] < 100, stats["flushLatenciesMs"]


def test_the_cut_reply_shows_what_was_heard_and_strikes_the_rest(conversation):
    heard = conversation["stats"]["interruptions"][0]["heard_text"]
    assert heard, "the story played for over 0.5 s: some words were heard"
    [bubble] = conversation["cut_bubbles"]
    assert bubble["unheard"] is not None, bubble
    assert bubble["text"].startswith(heard) and bubble["text"].endswith(bubble["unheard"]), (heard, bubble)


def test_the_turn_after_the_barge_in_is_answered(conversation):
    stats = conversation["stats"]
    assert len(stats["turnMetrics"]) >= 3
    errors = [line for line in conversation["console"] if line.startswith(("pageerror", "error"))]
    assert not errors, errors


# ---------------------------------------------------------------- fallback and failures

def test_pcm16_fallback_carries_speech_both_ways(agent_server, tmp_path):
    browser = Browser(fake_mic_wav(tmp_path, ((None, 1.5), (QUESTION, 0), (None, 20.0))))
    try:
        browser.tab.open(f"{agent_server.http}/?codec=pcm16")
        browser.tab.wait_for("window.voiceStats.finals.length >= 1", 60, "the final transcript")
        browser.tab.wait_for(f"window.voiceStats.samplesPlayed > {RATE_HZ // 2}", 60, "the reply to be played")
        stats = browser.tab.stats()
    finally:
        browser.close()
    assert stats["codec"] == "pcm16"
    assert wer(QUESTION, stats["finals"][0]) <= 0.25, stats["finals"]
    assert "pcm16/48000" in agent_server.log()


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory):
    """A server with a token and room for one session."""
    srv = start_server(tmp_path_factory.mktemp("guarded"), "--token", TOKEN, env={"VOICE_SERVER__MAX_SESSIONS": "1"})
    yield srv
    srv.stop()


def test_a_missing_token_shows_auth_failed_without_retrying(guarded_server, tmp_path):
    browser = Browser(fake_mic_wav(tmp_path, SILENCE))
    try:
        browser.tab.open(f"{guarded_server.http}/")
        browser.tab.wait_for("window.voiceStats.errors.length >= 1", 20, "the auth error")
        assert "Authentication failed" in browser.tab.problem()
        assert browser.tab.page.locator("#retry-now").is_hidden()
        assert browser.tab.page.get_by_role("button", name="Connect").is_visible()
    finally:
        browser.close()


def test_the_token_from_the_address_connects_and_a_second_page_is_told_the_server_is_busy(guarded_server, tmp_path):
    browser = Browser(fake_mic_wav(tmp_path, SILENCE))
    try:
        browser.tab.open(f"{guarded_server.http}/?token={TOKEN}")
        browser.tab.wait_for("window.voiceStats.sessionId !== null", 20, "READY with the token")
        assert TOKEN not in browser.tab.page.url, "the token must not stay in the address bar"
        second = browser.new_tab()
        second.open(f"{guarded_server.http}/?token={TOKEN}")
        second.wait_for("window.voiceStats.errors.length >= 1", 20, "SERVER_BUSY")
        text = second.problem()
        assert "busy" in text and "Reconnecting in" in text, text
    finally:
        browser.close()


def closed_port() -> int:
    """A local port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_named_and_retried(agent_server, tmp_path):
    browser = Browser(fake_mic_wav(tmp_path, SILENCE))
    dead = f"ws://127.0.0.1:{closed_port()}/ws"
    try:
        browser.tab.open(f"{agent_server.http}/?server={dead}")
        browser.tab.wait_for("window.voiceStats.errors.length >= 2", 20, "two failed attempts")
        text = browser.tab.problem()
        assert f"Cannot reach the server at {dead}" in text and "attempt 2" in text, text
    finally:
        browser.close()


def test_a_refused_microphone_says_how_to_allow_it(agent_server, tmp_path):
    browser = Browser(fake_mic_wav(tmp_path, SILENCE), allow_mic=False)
    try:
        browser.tab.open(f"{agent_server.http}/")
        browser.tab.wait_for("document.getElementById('problem').hidden === false", 20, "the microphone problem")
        assert "Microphone permission was denied" in browser.tab.problem()
        assert browser.tab.page.get_by_role("button", name="Connect").is_visible()
    finally:
        browser.close()


def test_the_chosen_agent_is_asked_for_and_its_dialogue_state_shows_in_the_timeline(agent_server, tmp_path):
    browser = Browser(fake_mic_wav(tmp_path, SILENCE))
    try:
        browser.tab.open(f"{agent_server.http}/?agent=booking")
        browser.tab.wait_for("window.voiceStats.events.some((e) => e.type === 'state_changed')", 20,
                             "the booking agent's first dialogue state")
        timeline = browser.tab.page.locator("#timeline").inner_text()
    finally:
        browser.close()
    assert "Connected to the booking agent" in timeline, timeline
    assert "State · " in timeline, timeline
