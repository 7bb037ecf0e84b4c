"""Small GGUF files written in the tests: a tiny Llama as llama.cpp lays it out (F32 tensors, query and key rows
permuted the way llama.cpp's converter permutes them), and broken files for the loader's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

_NAMES = {  # transformers parameter (per layer) -> GGUF tensor
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's order of the rotary halves: rows [head, 2, dim/2] → [head, dim/2, 2]."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(model: torch.nn.Module, path: Path, *, arch: str = "llama", raw_type=None) -> Path:
    """``model`` (a LlamaForCausalLM) as a GGUF file at ``path``; ``arch`` overrides the stated architecture and
    ``raw_type`` stores one extra tensor of that quantisation type (to test refusals)."""
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-test-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"] if hasattr(cfg, "rope_parameters") else 10000.0))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    f32 = lambda t: t.detach().float().numpy().copy()  # noqa: E731
    w.add_tensor("token_embd.weight", f32(model.model.embed_tokens.weight))
    for i, layer in enumerate(model.model.layers):
        for name, short in _NAMES.items():
            mod = layer.get_submodule(name)
            t = f32(mod.weight)
            if short == "attn_q":
                t = _permute(t, cfg.num_attention_heads)
            elif short == "attn_k":
                t = _permute(t, cfg.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{short}.weight", t)
    w.add_tensor("output_norm.weight", f32(model.model.norm.weight))
    if not cfg.tie_word_embeddings:
        w.add_tensor("output.weight", f32(model.lm_head.weight))
    if raw_type is not None:
        size = gguf.GGML_QUANT_SIZES[raw_type][1]  # bytes of one block
        w.add_tensor("extra.weight", np.zeros((1, size), dtype=np.uint8), raw_dtype=raw_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
