"""Every Prometheus metric of the server, in one place; other modules import what they increment.

A dedicated registry (not the global default) keeps /metrics to our own series and lets tests
start several servers in one process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds, ... (read from /proc)
ProcessCollector(registry=REGISTRY)

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

SESSIONS_ACTIVE = Gauge("voice_sessions_active", "Sessions past the handshake", registry=REGISTRY)
SESSIONS_TOTAL = Counter("voice_sessions_total", "Sessions by how they ended", ["outcome"], registry=REGISTRY)
FRAMES_IN = Counter("voice_frames_received_total", "Frames received by type", ["type"], registry=REGISTRY)
FRAMES_OUT = Counter("voice_frames_sent_total", "Frames sent by type", ["type"], registry=REGISTRY)
PROTOCOL_ERRORS = Counter("voice_protocol_errors_total", "ERROR frames sent, by code name", ["code"],
                          registry=REGISTRY)
UTTERANCES = Counter("voice_utterances_total", "User utterances by result (text, empty)", ["result"],
                     registry=REGISTRY)
ASR_FINAL_LATENCY = Histogram(
    "voice_asr_final_latency_seconds", "End of user speech (VAD) to final transcript sent",
    buckets=LATENCY_BUCKETS_S, registry=REGISTRY)
ASR_DECODE = Histogram("voice_asr_decode_seconds", "Whisper decode time by kind", ["kind"],
                       buckets=LATENCY_BUCKETS_S, registry=REGISTRY)


def render() -> bytes:
    """The Prometheus text exposition of this registry."""
    return generate_latest(REGISTRY)

TURN_STAGE = Histogram(
    "voice_turn_stage_seconds",
    "Per-turn latency from the end of user speech to each stage: final_transcript, first_llm_token, "
    "first_tts_audio, first_audio_sent (= voice-to-voice)",
    ["stage"], buckets=LATENCY_BUCKETS_S, registry=REGISTRY)
INTERRUPTIONS = Counter("voice_interruptions_total", "Agent replies cut short by the user (barge-in)",
                        registry=REGISTRY)
REPLIES = Counter("voice_replies_total", "Agent replies by outcome (done, interrupted, failed, preempted)", ["outcome"],
                  registry=REGISTRY)

# --- process health: refreshed on every scrape (a leak shows as a count that only grows) ---------
ASYNCIO_TASKS = Gauge("voice_asyncio_tasks", "asyncio tasks alive on the server's event loop", registry=REGISTRY)
THREADS = Gauge("voice_threads", "Python threads alive in the server process", registry=REGISTRY)


def _asyncio_tasks() -> int:
    try:
        return len(asyncio.all_tasks())  # /metrics is rendered on the loop (http.py)
    except RuntimeError:  # rendered outside a running loop: nothing to count
        return 0


ASYNCIO_TASKS.set_function(_asyncio_tasks)
THREADS.set_function(threading.active_count)

# --- admission control (voice/server/admission.py) -----------------------------------------------


class RecentValues:
    """The values of the last `window_s` seconds (thread-safe): a histogram only ever accumulates,
    the admission control needs what the latency is now."""

    def __init__(self, window_s: float = 60.0, keep: int = 2048):
        self.window_s = window_s
        self._values: deque[tuple[float, float]] = deque(maxlen=keep)  # (time.monotonic(), value)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append((time.monotonic(), value))

    def recent(self, window_s: float | None = None) -> list[float]:
        """The values added in the last `window_s` (default: the window this was made with)."""
        since = time.monotonic() - (self.window_s if window_s is None else window_s)
        with self._lock:
            return [v for at, v in self._values if at >= since]


#: Server-side voice-to-voice of each turn (ms), fed by pipeline/turn_metrics.py.
RECENT_VOICE_TO_VOICE_MS = RecentValues()
ENGINE_QUEUE_DELAY = Gauge(
    "voice_engine_queue_delay_seconds",
    "Longest recent wait of a request for its engine's worker (VAD, ASR, LLM, TTS): an engine behind "
    "real time", ["engine"], registry=REGISTRY)
ADMISSION_LIMIT = Gauge("voice_admission_session_limit",
                        "Sessions the admission control lets in now (learned from engine queue delays, "
                        "at most server.max_sessions)", registry=REGISTRY)
ADMISSION_OVERLOADED = Gauge("voice_admission_overloaded",
                             "1 while an engine's queue delay is over server.admission.max_queue_delay_ms",
                             registry=REGISTRY)
ADMISSION_TURN_P95 = Gauge("voice_admission_turn_p95_seconds",
                           "Server-side voice-to-voice p95 of the turns of the last server.admission.turn_window_s "
                           "(0 while too few turns)", registry=REGISTRY)
ADMISSION_REFUSED = Counter("voice_admission_refused_total",
                            "New sessions refused with SERVER_BUSY, by reason (max_sessions, capacity, settling)",
                            ["reason"], registry=REGISTRY)

# --- turn-taking (voice/pipeline/turns.py) --------------------------------------------------------
TURN_VERDICTS = Counter("voice_turn_verdicts_total", "End-of-turn detector verdicts (complete, incomplete)",
                        ["verdict"], registry=REGISTRY)
CONTINUATIONS = Counter("voice_turn_continuations_total",
                        "Turns the user went on with after a pause ended them (reply retracted, merged)",
                        registry=REGISTRY)
BACKCHANNELS = Counter("voice_backchannels_total", "Speech over the agent that did not take the turn",
                       registry=REGISTRY)
CALLS_ENDED = Counter("voice_calls_ended_total", "Calls the agent ended, by reason", ["reason"], registry=REGISTRY)
