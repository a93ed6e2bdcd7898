"""SNAC 24 kHz decoder (package `snac`): the codec behind Orpheus TTS, batched across streams.

Frame layout (our canonical order, 7 codes per frame, each in [0, 4096)):
    [l0, l1a, l1b, l2a, l2b, l2c, l2d]
SNAC's three codebooks run at 12, 24 and 47 Hz (vq_strides [4, 2, 1] over hop 512), so one frame is
1 code of layer 0, 2 of layer 1 and 4 of layer 2 and decodes to 4 * 512 = 2048 samples (85.3 ms).
The Orpheus token order differs (see voice/tts/orpheus.py); the parser maps it onto this one.

Weights: the published layout of hubertsiuzdak/snac_24khz (config.json + pytorch_model.bin) from a
local folder, or `random_weights=True`: the same architecture built from its config with random
init (shared/notes/models.md §4: 19.8 M parameters), which costs exactly what the real one costs.
No hub access ever: `SNAC.from_pretrained` would try one, so we load the files ourselves.

Two inference details:
- weight norm is folded into plain weights after loading (the parametrization otherwise recomputes
  every weight on every call, a large share of a 4-frame window's decode time);
- the decoder's NoiseBlocks add fresh Gaussian noise on every call (`noise: true` in the published
  config). `noise=False` replaces them by identity, which makes decoding deterministic: tests use it
  to compare batched, one-by-one and streamed decodes exactly.
"""

from __future__ import annotations

import json
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

#: hubertsiuzdak/snac_24khz config.json (the codec Orpheus was trained with).
SNAC_24KHZ_CONFIG: dict[str, Any] = {
    "sampling_rate": 24000, "encoder_dim": 48, "encoder_rates": [2, 4, 8, 8], "decoder_dim": 1024,
    "decoder_rates": [8, 8, 4, 2], "attn_window_size": None, "codebook_size": 4096, "codebook_dim": 8,
    "vq_strides": [4, 2, 1], "noise": True, "depthwise": True,
}
CODES_PER_FRAME = 7
WEIGHTS_FILE = "pytorch_model.bin"


def layers_from_frames(frames: np.ndarray) -> list[np.ndarray]:
    """[batch, n, 7] canonical frames -> SNAC's 3 code layers [batch, n], [batch, 2n], [batch, 4n]."""
    batch, n, _ = frames.shape
    return [frames[:, :, 0], frames[:, :, 1:3].reshape(batch, 2 * n), frames[:, :, 3:7].reshape(batch, 4 * n)]


class SnacDecoder:
    """Decode-only SNAC; implements `CodecDecoder`. One instance per process, used from one thread
    (the CodecEngine worker); `decode` is not reentrant."""

    name = "snac"
    codes_per_frame = CODES_PER_FRAME

    def __init__(self, path: str | Path | None = None, *, random_weights: bool = False,
                 device: DeviceSetting = "auto", dtype: DtypeSetting = "auto", n_threads: int | None = 1,
                 noise: bool = True, seed: int = 0, config: dict[str, Any] | None = None) -> None:
        import torch
        from snac import SNAC

        if (path is None) == (not random_weights):
            raise ValueError("give a SNAC folder (config.json + pytorch_model.bin) or random_weights=True")
        set_torch_threads(n_threads)
        self.device = choose_device(device, torch.cuda.is_available())
        self.dtype = choose_dtype(self.device, dtype)
        started = time.perf_counter()
        if random_weights:
            cfg = {**SNAC_24KHZ_CONFIG, **(config or {})}
            torch.manual_seed(seed)
            model = SNAC(**cfg)
            self.source = "random"
        else:
            folder = Path(path)  # type: ignore[arg-type]
            cfg = json.loads((folder / "config.json").read_text())
            model = SNAC(**cfg)
            state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            self.source = str(folder)
        del model.encoder  # decode only: 40% of the parameters never run
        model.eval()
        fold_weight_norm(model)
        if not noise:
            _drop_noise(model)
        self.noise = noise
        self._model = model.to(self.device, dtype=getattr(torch, self.dtype))
        self._torch = torch
        self.sample_rate_hz = int(cfg["sampling_rate"])
        self.codebook_size = int(cfg["codebook_size"])
        hop = int(np.prod(cfg["encoder_rates"]))
        self.samples_per_frame = hop * int(cfg["vq_strides"][0])
        if len(cfg["vq_strides"]) != 3 or list(cfg["vq_strides"]) != [4, 2, 1]:
            raise ValueError(f"frame layout needs vq_strides [4, 2, 1], got {cfg['vq_strides']}")
        log.info("SNAC %s on %s/%s loaded in %.2f s", self.source, self.device, self.dtype,
                 time.perf_counter() - started)

    def decode(self, frames: np.ndarray) -> np.ndarray:
        """[batch, n, 7] codes -> [batch, n * 2048] float32 audio at 24 kHz."""
        torch = self._torch
        frames = check_codes(frames, CODES_PER_FRAME, self.codebook_size)
        codes = [torch.from_numpy(np.ascontiguousarray(c)).to(self.device) for c in layers_from_frames(frames)]
        with torch.inference_mode():
            z = self._model.quantizer.from_codes(codes)
            audio = self._model.decoder(z.to(self._model_dtype()))
        return audio[:, 0, :].float().cpu().numpy()

    def _model_dtype(self) -> Any:
        return getattr(self._torch, self.dtype)


def _drop_noise(model: Any) -> None:
    """Replace every NoiseBlock by identity (deterministic decoding)."""
    from snac.layers import NoiseBlock
    from torch import nn

    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, NoiseBlock):
                setattr(module, name, nn.Identity())
