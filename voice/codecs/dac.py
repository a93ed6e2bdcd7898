"""DAC decoder (transformers `DacModel`) in OuteTTS 1.0's setting, batched across streams.

OuteTTS 1.0 speaks through a 24 kHz DAC with 2 codebooks x 1024 codes at 75 Hz (hop 320 samples):
ibm-research/DAC.speech.v1.0, as listed in llama.rn's OUTETTS_V1_0 profile (sampleRate 24000,
samplesPerFrame 320, codebooks 2, codebookSize 1024). A frame is [c1, c2]: 13.3 ms of audio.

Weights: a local folder in transformers format (config.json + model.safetensors), or random init
from a DacConfig (`random_weights=True`). The full-size decoder (decoder_hidden_size 1536) is not
real time on 2 CPU cores (notes/install.md §3: RTF ~0.9): it is a GPU codec in production, and tests
use `TINY_DAC` (same hop, rates and codebooks, 64 channels) to stay fast.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from voice.codecs.codec_base import (
    DeviceSetting,
    DtypeSetting,
    check_codes,
    choose_device,
    choose_dtype,
    fold_weight_norm,
    set_torch_threads,
)

log = logging.getLogger(__name__)

#: DAC 24 kHz with OuteTTS 1.0's two codebooks (DAC.speech.v1.0 shape).
OUTETTS_DAC_CONFIG: dict[str, Any] = {
    "encoder_hidden_size": 64, "downsampling_ratios": [2, 4, 5, 8], "decoder_hidden_size": 1536,
    "n_codebooks": 2, "codebook_size": 1024, "codebook_dim": 8, "sampling_rate": 24000,
}
#: Same framing, 24x narrower decoder: for tests on a shared CPU.
TINY_DAC: dict[str, Any] = {"decoder_hidden_size": 64, "encoder_hidden_size": 8}


class DacDecoder:
    """Decode-only DAC; implements `CodecDecoder` with frames [c1, c2, ...] (one code per codebook).
    Used from one thread (the CodecEngine worker)."""

    name = "dac"

    def __init__(self, path: str | Path | None = None, *, random_weights: bool = False,
                 device: DeviceSetting = "auto", dtype: DtypeSetting = "auto", n_threads: int | None = 1,
                 config: dict[str, Any] | None = None, seed: int = 0) -> None:
        import torch
        from transformers import DacConfig, DacModel

        if (path is None) == (not random_weights):
            raise ValueError("give a DAC folder (transformers format) or random_weights=True")
        set_torch_threads(n_threads)
        self.device = choose_device(device, torch.cuda.is_available())
        self.dtype = choose_dtype(self.device, dtype)
        started = time.perf_counter()
        if random_weights:
            torch.manual_seed(seed)
            model = DacModel(DacConfig(**{**OUTETTS_DAC_CONFIG, **(config or {})}))
            self.source = "random"
        else:
            folder = Path(path)  # type: ignore[arg-type]
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"no DAC config.json in {folder}")
            model = DacModel.from_pretrained(str(folder), local_files_only=True)
            self.source = str(folder)
        cfg = model.config
        del model.encoder  # decode only
        model.eval()
        fold_weight_norm(model)
        self._model = model.to(self.device, dtype=getattr(torch, self.dtype))
        self._torch = torch
        self.sample_rate_hz = int(cfg.sampling_rate)
        self.samples_per_frame = int(np.prod(cfg.downsampling_ratios))
        self.codes_per_frame = int(cfg.n_codebooks)
        self.codebook_size = int(cfg.codebook_size)
        log.info("DAC %s on %s/%s loaded in %.2f s", self.source, self.device, self.dtype,
                 time.perf_counter() - started)

    def decode(self, frames: np.ndarray) -> np.ndarray:
        """[batch, n, codebooks] codes -> [batch, n * hop] float32 audio."""
        torch = self._torch
        frames = check_codes(frames, self.codes_per_frame, self.codebook_size)
        codes = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 2, 1))).to(self.device)
        with torch.inference_mode():
            audio = self._model.decode(audio_codes=codes, return_dict=False)[0]
        audio_np = audio.float().cpu().numpy()
        want = frames.shape[1] * self.samples_per_frame
        # DAC's convolutions lose a few samples at the end (75 frames -> 23,992 samples): pad with
        # the last value so every frame is exactly one hop long and windows tile without a gap
        if audio_np.shape[1] < want:
            audio_np = np.pad(audio_np, ((0, 0), (0, want - audio_np.shape[1])), mode="edge")
        return audio_np[:, :want]
