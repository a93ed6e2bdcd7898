"""Settings: precedence of the layers, the token rule off loopback, readable errors."""

from __future__ import annotations

import pytest

from voice.config import ConfigError, env_overrides, is_loopback, load_settings


def test_defaults_are_the_cpu_profile():
    s = load_settings(environ={})
    assert s.profile == "cpu" and s.asr.device == "cpu" and s.asr.model == "whisper-tiny.en"
    assert s.server.host == "127.0.0.1" and s.server.token is None


def test_layers_file_then_env_then_flags(tmp_path):
    cfg = tmp_path / "voice.toml"
    cfg.write_text('[server]\nport = 9001\nmax_sessions = 3\n[asr]\nbeam_size = 2\n')
    s = load_settings(cfg, environ={"VOICE_SERVER__PORT": "9002", "VOICE_ASR__BEAM_SIZE": "3"},
                      overrides={"server": {"port": 9003}})
    assert s.server.port == 9003            # flag beats env beats file
    assert s.asr.beam_size == 3             # env beats file
    assert s.server.max_sessions == 3       # file beats default


def test_gpu_profile_selects_cuda():
    s = load_settings(profile="gpu", environ={})
    assert s.asr.device == "cuda" and s.asr.compute_type == "float16"


def test_non_loopback_needs_a_token():
    with pytest.raises(ConfigError, match=r"requires server\.token"):
        load_settings(overrides={"server": {"host": "0.0.0.0"}}, environ={})
    s = load_settings(overrides={"server": {"host": "0.0.0.0", "token": "t"}}, environ={})
    assert s.server.token == "t"


def test_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(environ={"VOICE_SERVER__PORT": "not-a-port"})
    with pytest.raises(ConfigError, match=r"server\.colour"):
        load_settings(overrides={"server": {"colour": "red"}}, environ={})
    with pytest.raises(ConfigError, match="unknown profile"):
        load_settings(profile="tpu", environ={})


def test_broken_toml_is_a_config_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[server\nport=1")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_settings(cfg, environ={})


def test_env_overrides_nest():
    assert env_overrides({"VOICE_VAD__DEFAULTS__THRESHOLD": "0.6", "HOME": "/x", "VOICE_X": "1"}) == {
        "vad": {"defaults": {"threshold": "0.6"}}}


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                            ("0.0.0.0", False), ("192.0.2.2", False), ("example.org", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop
