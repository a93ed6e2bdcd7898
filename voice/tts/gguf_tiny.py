"""Random-weight GGUF language models with the vocabulary layout of Orpheus and OuteTTS 1.0.

No real TTS weights can reach this project (shared/notes/models.md §4), but the engines only need
a model that llama.cpp loads and that has the right token ids: the text tokenizer, the audio-code
tokens and the markers. So we write one with the `gguf` package:
- tiny (default): a 2-layer Llama with n_embd 64, for tests: the whole load -> generate -> parse ->
  decode path runs on CPU in seconds (generation is constrained to audio ids, so random weights
  still produce well-formed code streams);
- `real_size=True`: the real shapes (Orpheus 3B = Llama-3.2-3B: 3072 wide, 28 layers, 24/8 heads,
  8192 FFN; OuteTTS-1.0-1B = Llama-3.2-1B), several GB in f16, for GPU benchmarks: it costs exactly
  what the real model costs per token. Written on demand into a cache folder, never committed.

Vocabulary layouts (ids matter: the engines compute them):
- Orpheus (canopyai Orpheus-TTS, orpheus_tts/engine_class.py and decoder.py): Llama-3 text ids
  0..128255 (<|begin_of_text|> 128000, <|eot_id|> 128009), then `<custom_token_N>` = 128256 + N up to
  the model's 156940 tokens. Markers: start/end of speech 128257/128258, start/end of human
  128259/128260, start/end of AI 128261/128262; audio codes from <custom_token_10> = 128266.
- OuteTTS 1.0 (outetts SpecialTokens; llama.rn rn-tts.cpp profile OUTETTS_V1_0): `<|c1_N|>` and
  `<|c2_N|>` (1025 ids each, c1 from 128256, c2 from 129281 in the 1B model) plus markers
  <|im_start|>, <|text_start|>, <|audio_start|>, <|audio_end|>, ... . Engines look these ids up by
  text, so the tiny file may put them anywhere.
The text part is a byte-level BPE (GPT-2 byte alphabet + letter-pair merges), enough for llama.cpp
to tokenize any prompt; it is not Llama-3's tokenizer and need not be.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ORPHEUS_N_VOCAB = 156940
LLAMA3_TEXT_VOCAB = 128256
OUTETTS_CODES = 1025  # per codebook in the 1B model's vocabulary (1024 used by DAC, one spare)

NORMAL, CONTROL, USER_DEFINED = 1, 3, 4  # llama.cpp token types


@dataclass(frozen=True)
class LlamaShape:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    rope_theta: float = 500000.0
    context_length: int = 8192


LLAMA_3_2_3B = LlamaShape(3072, 28, 24, 8, 8192, context_length=131072)
LLAMA_3_2_1B = LlamaShape(2048, 16, 32, 8, 8192, context_length=131072)


@dataclass
class Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    bos_id: int
    eos_id: int


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values (what byte-level BPE vocabularies hold)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _text_vocab(n_text: int) -> tuple[list[str], list[str]]:
    """Byte tokens, letter-pair merges (and their space-prefixed forms), then unreachable fillers."""
    tokens = _byte_alphabet()
    space = tokens[ord(" ")]
    letters = "abcdefghijklmnopqrstuvwxyz"
    merges = [f"{space} {c}" for c in letters] + [f"{a} {b}" for a in letters for b in letters]
    tokens += [m.replace(" ", "") for m in merges]
    if len(tokens) > n_text:
        raise ValueError(f"need at least {len(tokens)} text tokens, got {n_text}")
    tokens += [f"[text_{i}]" for i in range(len(tokens), n_text)]
    return tokens, merges


def orpheus_vocab() -> Vocab:
    """Orpheus's 156,940 ids: Llama-3 text + specials, then <custom_token_N> from 128256."""
    tokens, merges = _text_vocab(128000)
    types = [NORMAL] * len(tokens)
    named = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 4: "<|finetune_right_pad_id|>",
             6: "<|start_header_id|>", 7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>",
             10: "<|python_tag|>"}
    for i in range(LLAMA3_TEXT_VOCAB - 128000):
        tokens.append(named.get(i, f"<|reserved_special_token_{i}|>"))
        types.append(CONTROL)
    for n in range(ORPHEUS_N_VOCAB - LLAMA3_TEXT_VOCAB):
        tokens.append(f"<custom_token_{n}>")
        types.append(USER_DEFINED)
    return Vocab(tokens, types, merges, bos_id=128000, eos_id=128009)


OUTETTS_MARKERS = ("<|im_start|>", "<|im_end|>", "<|text_start|>", "<|text_end|>", "<|audio_start|>",
                   "<|audio_end|>", "<|word_start|>", "<|word_end|>", "<|features|>", "<|code|>",
                   "<|global_features_start|>", "<|global_features_end|>")


def outetts_vocab(real_size: bool = False) -> Vocab:
    """OuteTTS-1.0 style: text, c1/c2 codes (real layout: from 128256 and 129281), markers."""
    tokens, merges = _text_vocab(LLAMA3_TEXT_VOCAB if real_size else 1024)
    types = [NORMAL] * len(tokens)
    for book in (1, 2):
        tokens += [f"<|c{book}_{n}|>" for n in range(OUTETTS_CODES)]
        types += [USER_DEFINED] * OUTETTS_CODES
    tokens += list(OUTETTS_MARKERS)
    types += [CONTROL] * len(OUTETTS_MARKERS)
    return Vocab(tokens, types, merges, bos_id=tokens.index("<|im_start|>"), eos_id=tokens.index("<|im_end|>"))


def _random(rng: np.random.Generator, shape: tuple[int, ...], scale: float, dtype: type) -> np.ndarray:
    """Gaussian weights; big tensors tile a 4M-value block (cost is what a benchmark measures)."""
    size = int(np.prod(shape))
    block = rng.standard_normal(min(size, 1 << 22), dtype=np.float32) * scale
    return np.resize(block, size).reshape(shape).astype(dtype)


def _tensors(shape: LlamaShape, n_vocab: int) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, numpy shape [rows=out, cols=in], is_norm) in llama.cpp's LLM_ARCH_LLAMA naming."""
    head_dim = shape.n_embd // shape.n_head
    kv = shape.n_head_kv * head_dim
    out = [("token_embd.weight", (n_vocab, shape.n_embd), False), ("output_norm.weight", (shape.n_embd,), True)]
    for i in range(shape.n_layer):
        out += [(f"blk.{i}.attn_norm.weight", (shape.n_embd,), True),
                (f"blk.{i}.attn_q.weight", (shape.n_embd, shape.n_embd), False),
                (f"blk.{i}.attn_k.weight", (kv, shape.n_embd), False),
                (f"blk.{i}.attn_v.weight", (kv, shape.n_embd), False),
                (f"blk.{i}.attn_output.weight", (shape.n_embd, shape.n_embd), False),
                (f"blk.{i}.ffn_norm.weight", (shape.n_embd,), True),
                (f"blk.{i}.ffn_gate.weight", (shape.n_ff, shape.n_embd), False),
                (f"blk.{i}.ffn_up.weight", (shape.n_ff, shape.n_embd), False),
                (f"blk.{i}.ffn_down.weight", (shape.n_embd, shape.n_ff), False)]
    return out  # no output.weight: tied to token_embd, as in Llama-3.2 1B/3B


def write_llama_gguf(path: str | Path, vocab: Vocab, shape: LlamaShape, *, name: str, seed: int = 0) -> Path:
    """Write a random-weight Llama GGUF (f16 matrices, f32 norms) atomically; returns `path`."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(name)
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(vocab.tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_add_bos_token(True)
    specs = _tensors(shape, len(vocab.tokens))
    for tname, tshape, is_norm in specs:  # declare all, then stream the data: GBs never all in RAM
        dtype = np.float32 if is_norm else np.float16
        writer.add_tensor_info(tname, tshape, np.dtype(dtype), int(np.prod(tshape)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, tshape, is_norm in specs:
        if is_norm:
            writer.write_tensor_data(np.ones(tshape, dtype=np.float32))
        else:
            writer.write_tensor_data(_random(rng, tshape, 1.0 / np.sqrt(tshape[-1]), np.float16))
    writer.close()
    tmp.replace(path)
    return path


def write_orpheus_gguf(path: str | Path, *, n_embd: int = 64, n_layer: int = 2, n_head: int = 4,
                       n_head_kv: int = 2, n_ff: int = 128, real_size: bool = False, seed: int = 0) -> Path:
    """A random Orpheus-layout GGUF: tiny by default, Orpheus-3B's shape with `real_size`."""
    shape = LLAMA_3_2_3B if real_size else LlamaShape(n_embd, n_layer, n_head, n_head_kv, n_ff)
    return write_llama_gguf(path, orpheus_vocab(), shape, name="orpheus-random", seed=seed)


def write_outetts_gguf(path: str | Path, *, n_embd: int = 64, n_layer: int = 2, n_head: int = 4,
                       n_head_kv: int = 2, n_ff: int = 128, real_size: bool = False, seed: int = 0) -> Path:
    """A random OuteTTS-1.0-layout GGUF: tiny by default, Llama-OuteTTS-1.0-1B's shape with `real_size`."""
    shape = LLAMA_3_2_1B if real_size else LlamaShape(n_embd, n_layer, n_head, n_head_kv, n_ff)
    return write_llama_gguf(path, outetts_vocab(real_size), shape, name="outetts-random", seed=seed)


def cached_gguf(kind: str, cache_dir: str | Path, *, real_size: bool = False) -> Path:
    """The random GGUF of `kind` ("orpheus" | "outetts") in `cache_dir`, written on first use."""
    writers = {"orpheus": write_orpheus_gguf, "outetts": write_outetts_gguf}
    if kind not in writers:
        raise ValueError(f"unknown token TTS kind {kind!r}")
    path = Path(cache_dir) / f"{kind}-random-{'real' if real_size else 'tiny'}.gguf"
    if not path.exists():
        writers[kind](path, real_size=real_size)
    return path
