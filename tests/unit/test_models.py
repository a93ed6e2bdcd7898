"""The model registry: resolution, clear errors, atomic joining with sha256 verification."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from voice import models
from voice.models import ModelCorrupt, ModelMissing, ModelSpec, Part


@pytest.fixture
def chunk_package(tmp_path, monkeypatch):
    """A throwaway installed 'package' holding two chunk files, like the real chunk wheels."""
    pkg = tmp_path / "site" / "fake_chunks_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    a, b = b"first half " * 1000, b"second half" * 700
    (pkg / "data" / "a.bin").write_bytes(a)
    (pkg / "data" / "b.bin").write_bytes(b)
    (pkg / "data" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("VOICE_CACHE_DIR", str(tmp_path / "cache"))
    sys.modules.pop("fake_chunks_pkg", None)
    spec = ModelSpec("fake-joined", "llm", "test", ("fake-chunks-pkg",),
                     (Part("fake_chunks_pkg", "data/a.bin"), Part("fake_chunks_pkg", "data/b.bin")),
                     hashlib.sha256(a + b).hexdigest(), len(a + b), "joined.bin",
                     extras=(Part("fake_chunks_pkg", "data/config.json"),))
    monkeypatch.setitem(models.REGISTRY, spec.name, spec)
    return spec, a + b


def test_chunks_are_joined_once_and_verified(chunk_package):
    spec, content = chunk_package
    path = models.model_file(spec.name)
    assert path.read_bytes() == content
    assert (path.parent / "config.json").is_file()
    assert not list(path.parent.glob(".*.tmp")), "temp file left behind"
    mtime = path.stat().st_mtime_ns
    assert models.model_file(spec.name) == path and path.stat().st_mtime_ns == mtime  # not re-joined


def test_wrong_sha_is_refused_and_leaves_nothing(chunk_package, monkeypatch):
    spec, _ = chunk_package
    bad = ModelSpec(**{**spec.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(models.REGISTRY, spec.name, bad)
    with pytest.raises(ModelCorrupt, match="sha256"):
        models.model_file(spec.name)
    assert not (models.cache_dir() / spec.name / spec.filename).exists()


def test_changed_file_after_join_is_rejoined(chunk_package):
    spec, content = chunk_package
    path = models.model_file(spec.name)
    path.write_bytes(b"tampered")
    assert models.model_file(spec.name).read_bytes() == content


def test_missing_package_gives_one_line_naming_it(monkeypatch):
    spec = ModelSpec("ghost", "asr", "test", ("ghost-model-package",), (Part("no_such_module_xyz", "m.bin"),),
                     "0" * 64, 1, "m.bin")
    monkeypatch.setitem(models.REGISTRY, "ghost", spec)
    with pytest.raises(ModelMissing) as e:
        models.model_path("ghost")
    assert "pip install" in str(e.value) and "ghost-model-package" in str(e.value)
    assert "\n" not in str(e.value)
    assert models.status("ghost", verify=False).state == "missing"


def test_resolve_accepts_names_paths_and_explicit_hub_ids(tmp_path):
    assert models.resolve("whisper-tiny.en", "asr") == models.model_path("whisper-tiny.en")
    assert models.resolve(str(tmp_path)) == tmp_path
    assert models.hub_id("hf:Systran/faster-whisper-small") == "Systran/faster-whisper-small"
    assert models.hub_id("Systran/faster-whisper-small") is None
    with pytest.raises(ModelMissing, match="neither a registry name"):
        models.resolve("Systran/faster-whisper-small")  # a bare hub id is never fetched
    with pytest.raises(ModelMissing, match="not asr"):
        models.resolve("silero-vad", "asr")


@pytest.mark.parametrize("name", ["silero-vad", "whisper-tiny.en", "smollm2-135m", "piper-joe"])
def test_packaged_models_are_installed_and_intact(name):
    status = models.status(name, verify=True)
    assert status.state == "ok", status.detail
    assert Path(status.path).is_file()
