"""bench/gpu.py, the GPU one-shot benchmark, in its --smoke mode: the same code as on the GPU with
tiny shapes on the CPU, so what can break there (a table, an import the GPU image lacks, the
static-cache decode step the CUDA graph captures) breaks here first."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

BENCH = ROOT / "bench"
#: Packages of the server stack that the bare GPU image does not have (KINDS.md's package list).
#: The smoke run sees them as absent (None in sys.modules: `import` fails, `find_spec` says no).
NOT_ON_GPU_IMAGE = ["pydantic", "websockets", "soxr", "faster_whisper", "ctranslate2", "opuslib", "soundfile",
                    "sounddevice", "llama_cpp", "prometheus_client", "piper", "gguf", "mcp"]
RUNNER = """
import runpy, sys
for name in sys.argv[2:]:
    sys.modules[name] = None
sys.argv = ["bench/gpu.py", "--smoke", "--out", sys.argv[1]]
runpy.run_path("bench/gpu.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """One smoke run, as on the GPU image: without the packages that image lacks."""
    out = tmp_path_factory.mktemp("gpu") / "gpu-smoke.json"
    result = subprocess.run([sys.executable, "-c", RUNNER, str(out), *NOT_ON_GPU_IMAGE], cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def gpu_module():
    sys.path[:0] = [str(BENCH)]
    try:
        import gpu
        import gpu_lm

        yield gpu, gpu_lm
    finally:
        sys.path.remove(str(BENCH))


def test_smoke_json_has_every_table_and_the_machine(smoke):
    data = smoke
    assert data["smoke"] is True and data["device"] == "cpu"
    for key in ("device_name", "torch", "transformers", "machine", "plan"):
        assert data[key], key
    for section in ("snac", "lm", "whisper"):
        assert "error" not in data[section], data[section].get("traceback")


def test_snac_table_has_a_timed_row_per_stream_count(smoke):
    snac = smoke["snac"]
    assert [r["streams"] for r in snac["rows"]] == smoke["plan"]["snac_streams"]
    assert snac["window_audio_ms"] == pytest.approx(2048 / 24)
    for row in snac["rows"]:
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["rtf"] == pytest.approx(row["p50_ms"] / snac["window_audio_ms"])
        assert row["streams_served"] == pytest.approx(row["streams"] / row["rtf"])


def test_lm_static_step_decodes_what_eager_decodes_without_host_reads(smoke):
    """The step a GPU captures as a CUDA graph: same tokens as the eager loop, every token written to
    its own cache slot, and no Python read of a tensor value (capture would refuse the sync)."""
    lm, plan = smoke["lm"], smoke["plan"]
    assert [r["batch"] for r in lm["eager"]] == [r["batch"] for r in lm["cuda_graph"]] == plan["lm_batches"]
    for row in lm["eager"]:
        assert row["tokens_per_s_total"] == pytest.approx(row["tokens_per_s_per_stream"] * row["batch"])
    for row in lm["cuda_graph"]:
        assert row["tokens_match_eager"] is True
        assert row["positions_advance"] is True
        assert row["cache_slots_written"] == plan["prefill_tokens"] + plan["new_tokens"]  # uncaptured: no warm-up
        assert row["host_reads_per_step"] == 0


def test_whisper_table_times_encoder_and_decoder(smoke):
    whisper, plan = smoke["whisper"], smoke["plan"]
    assert [r["utterances"] for r in whisper["rows"]] == plan["whisper_batches"]
    for row in whisper["rows"]:
        assert row["encoder_ms"] > 0 and row["decode_ms"] > 0
        assert row["total_ms"] == pytest.approx(row["encoder_ms"] + row["decode_ms"])


def test_host_read_counter_sees_an_item_call(gpu_module):
    gpu, gpu_lm = gpu_module
    model = gpu_lm.build_lm(gpu.SMOKE)
    step = gpu_lm.StaticDecodeStep(model, 1, 32)
    step.prefill(gpu_lm._prompt(model, 1, 8))
    plain = step._step
    step._step = lambda: (plain(), step.position.item())
    assert step.host_reads_in_step() == 1


def test_full_plan_builds_the_published_sizes(gpu_module):
    """On the meta device (no memory): Orpheus 3B is 3.30 B parameters, Whisper turbo 0.81 B."""
    gpu, gpu_lm = gpu_module
    plan = dataclasses.replace(gpu.FULL, device="meta")
    lm = gpu_lm.build_lm(plan)
    assert sum(p.numel() for p in lm.parameters()) / 1e9 == pytest.approx(3.30, abs=0.01)
    assert str(lm.dtype) == "torch.bfloat16"
    whisper = gpu.build_whisper(plan)
    assert sum(p.numel() for p in whisper.parameters()) / 1e9 == pytest.approx(0.809, abs=0.01)


def test_orpheus_constants_agree_with_the_tts_engine(gpu_module):
    from voice.tts.orpheus import ORPHEUS_WINDOW, TOKENS_PER_FRAME

    gpu, gpu_lm = gpu_module
    assert ORPHEUS_WINDOW.window_frames == gpu.ORPHEUS_WINDOW_FRAMES
    assert ORPHEUS_WINDOW.hop_frames == gpu.ORPHEUS_KEPT_FRAMES
    assert pytest.approx(TOKENS_PER_FRAME * 24000 / 2048) == gpu_lm.ORPHEUS_TOKENS_PER_S


def test_snac_wheel_installs_without_an_index(tmp_path):
    """What bench/gpu.sh does on the offline GPU machine."""
    wheels = sorted(str(p) for p in (BENCH / "wheels").glob("*.whl"))
    assert wheels
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                    str(tmp_path), *wheels], check=True, timeout=120)
    found = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import snac; "
                            "print(snac.__file__)", str(tmp_path)], capture_output=True, text=True, check=True)
    assert Path(found.stdout.strip()).is_relative_to(tmp_path)
