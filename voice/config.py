"""Typed settings: defaults < named profile < TOML file < environment < command-line flags.

Every component has one settings model with its defaults written next to their meaning and units
in the names. Profiles are small dicts of overrides: "cpu" (the embedded default, 2 cores) and
"gpu" (CUDA for the engines that can use it). Environment variables look like
VOICE_SERVER__PORT=9000 or VOICE_ASR__DEVICE=cuda (section, double underscore, key).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voice.agents.settings import AgentsSettings
from voice.asr.endpointing import TurnSettings
from voice.asr.streaming import AsrSettings as StreamingSettings
from voice.asr.vad import VadSettings
from voice.errors import ConfigError
from voice.llm.settings import LlmSettings
from voice.pipeline.recording import RecordingSettings
from voice.pipeline.settings import BargeInSettings, CallSettings, ContinuationSettings
from voice.server.admission import AdmissionSettings
from voice.tts import TtsSettings

Device = Literal["auto", "cpu", "cuda"]
REPO_WEB_DIR = Path(__file__).resolve().parent.parent / "web"




class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(Strict):
    host: str = "127.0.0.1"                 # bind address; anything but loopback requires `token`
    port: int = Field(8765, ge=0, le=65535)  # 0 = pick a free port (printed on start)
    token: str | None = None                # bearer token: HELLO "token" or Authorization header
    max_sessions: int = Field(16, ge=1)     # more connections get SERVER_BUSY
    max_payload_bytes: int = Field(65536, ge=1024)  # larger frames are refused from their header
    idle_timeout_s: float = Field(60.0, gt=0)       # no frame from the client for this long -> closed
    handshake_timeout_s: float = Field(10.0, gt=0)  # HELLO must arrive within this time
    drain_timeout_s: float = Field(10.0, ge=0)      # SIGTERM waits this long for in-flight turns
    max_errors: int = Field(20, ge=1)               # non-fatal protocol errors before TOO_MANY_ERRORS
    #: Typed turns and DTMF cost model time but no audio time: a session may send `turn_burst` at once,
    #: then one every `turn_refill_s` (more get RATE_LIMITED); config/interrupt controls 4x as many.
    turn_burst: int = Field(5, ge=1)
    turn_refill_s: float = Field(2.0, gt=0)
    web_dir: Path = REPO_WEB_DIR                    # static files served at /
    #: SO_REUSEPORT: several server processes listen on one port and the kernel spreads the
    #: connections (`voice serve --workers N` sets it; so may hand-started processes).
    reuse_port: bool = False
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)  # refuse new sessions when behind
    #: glibc keeps what the calls freed (voice/server/memory.py): fewer malloc arenas (0 = glibc's
    #: default of 8 per core), and the free heap handed back to the OS when the last call ends and
    #: at most every `trim_memory_every_s` while calls come and go (0 = never).
    malloc_arena_max: int = Field(2, ge=0)
    trim_memory_every_s: float = Field(60.0, ge=0)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ServerSettings:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"binding {self.host} (not loopback) requires server.token "
                             "(--token or VOICE_SERVER__TOKEN)")
        return self


class AsrSettings(Strict):
    model: str = "whisper-tiny.en"          # registry name, a CTranslate2 folder, or hf:ORG/NAME
    device: Device = "cpu"
    compute_type: str | None = None         # None: int8 on CPU, float16 on CUDA
    cpu_threads: int = Field(2, ge=1)       # CTranslate2 intra-op threads
    beam_size: int = Field(1, ge=1)
    language: str | None = "en"             # None: detect (multilingual models only)
    streaming: StreamingSettings = Field(default_factory=StreamingSettings)


class VadEngineSettings(Strict):
    model: str = "silero-vad-pkg"           # registry name or an .onnx path; this one batches across sessions
    defaults: VadSettings = Field(default_factory=VadSettings)  # sessions may override per HELLO


class AgentSettings(Strict):
    barge_in: BargeInSettings = Field(default_factory=BargeInSettings)  # sessions may override per HELLO
    #: The user goes on after a pause that ended the turn, before the reply was heard: one turn.
    continuation: ContinuationSettings = Field(default_factory=ContinuationSettings)
    #: Greeting, re-prompts, goodbye, maximum duration (agents' YAML `call:` and HELLO "call" override).
    call: CallSettings = Field(default_factory=CallSettings)
    #: Start the reply on the ASR's early final, during the end-of-turn silence; it is held (nothing
    #: sent, no tool run) until the turn is confirmed and dropped if the user speaks on. Costs
    #: wasted LLM/TTS work on pauses shorter than the end-of-turn silence; saves that work's time.
    preemptive_reply: bool = True
    #: Call recordings: stereo audio + a JSON of events per call, opt-in (voice/pipeline/recording.py).
    recording: RecordingSettings = Field(default_factory=RecordingSettings)


class RealtimeSettings(Strict):
    """The OpenAI Realtime API door (/v1/realtime, voice/doors/realtime.py)."""

    agent: str = "assistant"   # the server's agent, until a client sets its own instructions or tools
    #: Largest input_audio_buffer.append (decoded bytes): 1 MiB = ~22 s of PCM 24 kHz (OpenAI: 15 MiB).
    max_append_bytes: int = Field(1 << 20, ge=4096, le=15 << 20)


class Settings(Strict):
    profile: str = "cpu"
    server: ServerSettings = Field(default_factory=ServerSettings)
    vad: VadEngineSettings = Field(default_factory=VadEngineSettings)
    asr: AsrSettings = Field(default_factory=AsrSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    agents: AgentsSettings = Field(default_factory=AgentsSettings)  # which agent, tools, flows, memory
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)
    turn: TurnSettings = Field(default_factory=TurnSettings)  # end of turn: Smart Turn + words + silence


PROFILES: dict[str, dict[str, Any]] = {
    # 2 shared cores: llama.cpp with 2 threads collapses (spin barriers) while ASR/TTS run beside it
    # (n_threads_batch 2: the prompt is evaluated while ASR and TTS are idle; n_threads_solo 2: so is
    # the first sentence, mostly: 2 threads for each token generated while no other model runs).
    # contexts 2: tool rounds and plain turns each keep a warm KV cache (measured: p95 voice-to-voice
    # 3.5 -> 2.5 s, bench/results/voice_to_voice_cpu_ab.json); two replies at once drop to 1 thread each.
    "cpu": {"llm": {"n_threads": 1, "n_threads_batch": 2, "n_threads_solo": 2, "contexts": 2}},
    "gpu": {"asr": {"device": "cuda", "model": "whisper-base", "compute_type": "float16"},
            "llm": {"device": "cuda"}},
}


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """VOICE_SECTION__KEY=value -> {"section": {"key": value}}; values stay strings (pydantic converts)."""
    out: dict[str, Any] = {}
    for name, value in (environ if environ is not None else os.environ).items():
        if not name.startswith("VOICE_") or "__" not in name:
            continue
        keys = name[len("VOICE_"):].lower().split("__")
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return out


def load_settings(config_file: str | Path | None = None, profile: str | None = None,
                  overrides: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Build the effective settings; raises ConfigError with a readable message."""
    layers: dict[str, Any] = {}
    if config_file:
        try:
            layers = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"config file {config_file}: {e}") from e
    env = env_overrides(environ)
    name = profile or (overrides or {}).get("profile") or env.get("profile") or layers.get("profile") or "cpu"
    if name not in PROFILES:
        raise ConfigError(f"unknown profile '{name}' (known: {', '.join(PROFILES)})")
    merged = deep_merge(PROFILES[name], layers)
    merged = deep_merge(merged, env)
    merged = deep_merge(merged, overrides or {})
    merged["profile"] = name
    try:
        return Settings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e)) from None


def describe_validation_error(e: ValidationError) -> str:
    """One line per problem, 'section.key: why' — not a pydantic dump."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"{loc}: {err['msg']}")
    return "; ".join(lines)
