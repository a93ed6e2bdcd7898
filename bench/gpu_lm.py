"""LM decode throughput for bench/gpu.py: an Orpheus-3B-shaped Llama built from its config with
random weights, timed two ways on the same model and the same batches.

- `eager`: transformers out of the box, a DynamicCache. Python launches each of the ~500 kernels
  of every token, so until the batch is large the GPU waits on Python, not on memory or math.
- `cuda_graph`: one decode step over a StaticCache with fixed input buffers, captured once per
  batch size as a CUDA graph and replayed: the same kernels, launched by the GPU itself. This is
  how vLLM and SGLang decode, so it is the number to size an Orpheus deployment by. On a CPU
  (`--smoke`) the same step runs uncaptured, and its tokens are checked against the eager ones.

Both are greedy (argmax): Orpheus samples, which costs the same one pass over the logits.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np

#: Orpheus speaks 7 tokens per SNAC frame of 2048 samples at 24 kHz (voice/tts/orpheus.py): 82.03 tokens/s.
ORPHEUS_TOKENS_PER_S = 7 * 24000 / 2048
GRAPH_WARMUP_STEPS = 3


def cache_kwarg(model: Any) -> str:
    """The forward argument that takes the KV cache: `cache` from transformers 5.2x on,
    `past_key_values` before (the GPU image has 5.17; the old name goes in 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def build_lm(plan: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**plan.lm_config)
    torch.manual_seed(0)
    with torch.device(plan.device):  # built on the GPU: no 13 GB fp32 copy in host memory first
        model = LlamaForCausalLM._from_config(config, dtype=getattr(torch, plan.lm_dtype))
    return model.eval()


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _prompt(model: Any, batch: int, tokens: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(batch)
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=generator)
    return ids.to(model.device)


def eager_decode(model: Any, prompt: Any, new_tokens: int) -> tuple[float, float, Any]:
    """Prefill, then `new_tokens` greedy steps with a DynamicCache: (prefill ms, decode ms, tokens)."""
    import torch
    from transformers import DynamicCache

    device = prompt.device.type
    cache = {cache_kwarg(model): DynamicCache(config=model.config)}
    tokens = []
    with torch.inference_mode():
        _sync(device)
        started = time.perf_counter()
        out = model(input_ids=prompt, **cache, use_cache=True, logits_to_keep=1)
        ids = out.logits[:, -1].argmax(-1, keepdim=True)
        _sync(device)
        prefilled = time.perf_counter()
        for _ in range(new_tokens):
            tokens.append(ids)
            out = model(input_ids=ids, **cache, use_cache=True, logits_to_keep=1)
            ids = out.logits[:, -1].argmax(-1, keepdim=True)
        _sync(device)
    return (prefilled - started) * 1000, (time.perf_counter() - prefilled) * 1000, torch.cat(tokens, 1)


class StaticDecodeStep:
    """Greedy decoding of `batch` streams whose every step reads and writes the same tensors (the
    StaticCache, `next_ids`, `position`), so a step can be captured as one CUDA graph and replayed.
    Owns its cache; one instance per batch size."""

    def __init__(self, model: Any, batch: int, max_tokens: int):
        import torch
        from transformers import StaticCache

        self.model, self.device = model, model.device
        self.cache = StaticCache(config=model.config, max_cache_len=max_tokens)
        self.next_ids = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        self.position = torch.zeros(1, dtype=torch.long, device=self.device)
        # transformers < 5.2x takes the write positions as `cache_position`; later ones track them in the cache
        self._pass_cache_position = "cache_position" in inspect.signature(model.model.forward).parameters
        self._cache_kwarg = cache_kwarg(model)
        self.graph: Any = None

    def _forward(self, ids: Any, positions: Any) -> Any:
        extra = {"cache_position": positions} if self._pass_cache_position else {}
        out = self.model(input_ids=ids, position_ids=positions.view(1, -1), use_cache=True, logits_to_keep=1,
                         **{self._cache_kwarg: self.cache}, **extra)
        return out.logits[:, -1].argmax(-1, keepdim=True)

    def prefill(self, prompt: Any) -> None:
        import torch

        with torch.inference_mode():
            self.next_ids.copy_(self._forward(prompt, torch.arange(prompt.shape[1], device=self.device)))
            self.position.fill_(prompt.shape[1])

    def _step(self) -> None:
        self.next_ids.copy_(self._forward(self.next_ids, self.position))
        self.position.add_(1)

    def capture(self) -> None:
        """Warm up on a side stream (as torch.cuda.graphs asks), then record one step."""
        import torch

        with torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP_STEPS):
                    self._step()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._step()

    def step(self) -> Any:
        """One token for every stream; returns `next_ids` (the buffer, not a copy)."""
        import torch

        if self.graph is not None:
            self.graph.replay()
        else:
            with torch.inference_mode():
                self._step()
        return self.next_ids

    def host_reads_in_step(self) -> int:
        """Python reads of tensor values (`.item()`, `bool()`, ...) in one uncaptured step. On a GPU
        each is a host sync, which CUDA graph capture refuses: the CPU smoke run predicts the capture."""
        import torch

        names = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__")
        saved = {name: getattr(torch.Tensor, name) for name in names}
        reads: list[str] = []

        def counting(name: str) -> Any:
            def read(tensor: Any, *args: Any, **kwargs: Any) -> Any:
                reads.append(name)
                return saved[name](tensor, *args, **kwargs)
            return read

        try:
            for name in names:
                setattr(torch.Tensor, name, counting(name))
            self.step()
        finally:
            for name, method in saved.items():
                setattr(torch.Tensor, name, method)
        return len(reads)

    def written_up_to(self) -> int | None:
        """Slots of layer 0's key cache that hold something, or None where this transformers keeps
        them elsewhere. A replayed graph that baked one position in would fill a single slot."""
        layers = getattr(self.cache, "layers", None)
        keys = getattr(layers[0], "keys", None) if layers else None
        if keys is None:
            return None
        filled = keys[0].abs().sum(dim=(0, 2)) != 0
        return int(filled.nonzero().max().item()) + 1 if filled.any() else 0


def graph_decode(model: Any, prompt: Any, new_tokens: int, capture: bool) -> tuple[float, float, Any, dict]:
    """Same work as `eager_decode` through StaticDecodeStep: (prefill ms, decode ms, tokens, checks)."""
    import torch

    device = prompt.device.type
    max_tokens = prompt.shape[1] + GRAPH_WARMUP_STEPS + new_tokens + 1
    stepper = StaticDecodeStep(model, prompt.shape[0], max_tokens)
    _sync(device)
    started = time.perf_counter()
    stepper.prefill(prompt)
    _sync(device)
    prefilled = time.perf_counter()
    if capture:
        stepper.capture()
    _sync(device)
    captured = time.perf_counter()
    first = int(stepper.position.item())
    tokens = [stepper.next_ids.clone()]
    for _ in range(new_tokens - 1):
        tokens.append(stepper.step().clone())
    stepper.step()
    _sync(device)
    decode_ms = (time.perf_counter() - captured) * 1000
    written = stepper.written_up_to()
    checks = {"capture_ms": (captured - prefilled) * 1000, "cache_slots_written": written,
              "host_reads_per_step": None if capture else stepper.host_reads_in_step(),
              "cache_slots_expected": first + new_tokens,
              "positions_advance": written is None or written == first + new_tokens}
    return (prefilled - started) * 1000, decode_ms, torch.cat(tokens, 1), checks


def _row(batch: int, prefill_ms: float, decode_ms: float, new_tokens: int) -> dict:
    per_stream = new_tokens / (decode_ms / 1000)
    aggregate = per_stream * batch
    return {"batch": batch, "prefill_ms": prefill_ms, "ms_per_step": decode_ms / new_tokens,
            "tokens_per_s_per_stream": per_stream, "tokens_per_s_total": aggregate,
            "real_time": per_stream >= ORPHEUS_TOKENS_PER_S,
            "orpheus_streams_served": aggregate / ORPHEUS_TOKENS_PER_S if per_stream >= ORPHEUS_TOKENS_PER_S else 0.0}


def _print_row(mode: str, row: dict) -> None:
    print(f"{mode:>10} {row['batch']:>6} {row['prefill_ms']:>10.1f} {row['ms_per_step']:>8.2f} "
          f"{row['tokens_per_s_per_stream']:>10.1f} {row['tokens_per_s_total']:>10.0f} "
          f"{row['orpheus_streams_served']:>8.1f}", flush=True)


def lm_table(plan: Any, clock: Any) -> dict:
    model = build_lm(plan)
    cuda = plan.device == "cuda"
    params_b = sum(p.numel() for p in model.parameters()) / 1e9
    print(f"\nLM decode, {params_b:.2f} B parameters, {plan.lm_dtype}: prefill {plan.prefill_tokens}, then "
          f"{plan.new_tokens} tokens per stream (Orpheus needs {ORPHEUS_TOKENS_PER_S:.1f} tokens/s per stream)\n"
          f"{'mode':>10} {'batch':>6} {'prefill ms':>10} {'ms/step':>8} {'tok/s/str':>10} {'tok/s all':>10} "
          f"{'streams':>8}", flush=True)
    eager, graphed, graph_error = [], [], ""
    for batch in plan.lm_batches:
        if not clock.left():
            eager.append({"batch": batch, "skipped": "time budget"})
            continue
        prompt = _prompt(model, batch, plan.prefill_tokens)
        eager_decode(model, prompt[:, :8], 4)  # warm-up: kernels chosen, allocator primed
        prefill_ms, decode_ms, eager_tokens = eager_decode(model, prompt, plan.new_tokens)
        eager.append(_row(batch, prefill_ms, decode_ms, plan.new_tokens))
        _print_row("eager", eager[-1])
        if graph_error:
            graphed.append({"batch": batch, "skipped": graph_error})
            continue
        try:
            prefill_ms, decode_ms, static_tokens, checks = graph_decode(model, prompt, plan.new_tokens, capture=cuda)
        except Exception as e:  # a transformers version whose step cannot be captured: keep the eager table
            graph_error = f"{type(e).__name__}: {e}"
            graphed.append({"batch": batch, "error": graph_error})
            print(f"cuda_graph batch {batch} FAILED: {graph_error}", flush=True)
            continue
        # Uncaptured (CPU) the static step must compute what the eager one does, token for token;
        # captured, the warm-up steps shift the tokens, so there the cache's write positions are checked.
        checks["tokens_match_eager"] = None if cuda else bool((static_tokens == eager_tokens).all())
        graphed.append({**_row(batch, prefill_ms, decode_ms, plan.new_tokens), **checks})
        _print_row("cuda_graph" if cuda else "static", graphed[-1])
    best = {mode: max((r.get("orpheus_streams_served", 0.0) for r in rows), default=0.0)
            for mode, rows in (("eager", eager), ("cuda_graph", graphed))}
    return {"parameters_b": params_b, "dtype": plan.lm_dtype, "prefill_tokens": plan.prefill_tokens,
            "new_tokens": plan.new_tokens, "orpheus_tokens_per_s": ORPHEUS_TOKENS_PER_S, "eager": eager,
            "cuda_graph": graphed, "graph_captured": cuda, "max_orpheus_streams": best,
            "mean_ms_per_step_eager": float(np.mean([r["ms_per_step"] for r in eager if "ms_per_step" in r]
                                                    or [float("nan")]))}
