"""Tiny models built from configs with fixed seeds; never downloads."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("COLUMNS", "200")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

torch.set_num_threads(2)

V5 = int(transformers.__version__.split(".")[0]) >= 5

_COMMON = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=256,
    max_position_embeddings=4096,
    initializer_range=0.2,  # large enough that a scaled row visibly changes the logits
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)

_PAIR = {"layer_types": ["sliding_attention", "full_attention"]}
_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}  # GLM's defaults lie beyond a 256-token vocabulary
# name -> (config class name, extra config)
FAMILIES = {
    "llama": ("LlamaConfig", {}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "mistral_sw24": ("MistralConfig", {"sliding_window": 24}),
    "qwen2_sw24": ("Qwen2Config", {"use_sliding_window": True, "sliding_window": 24, "max_window_layers": 1}),
    "ministral_sw24": ("MinistralConfig", {"sliding_window": 24, "head_dim": 16}),
    # one sliding and one global layer each: Gemma 3 (local RoPE base on the sliding layer, 1/√24 scaling),
    # Command R7B (global layer without RoPE), OLMo 3; GLM and GLM-4 rotate half of each head
    "gemma3_sw8": ("Gemma3TextConfig", {"head_dim": 16, "sliding_window": 8, "query_pre_attn_scalar": 24, **_PAIR}),
    "cohere2_sw8": ("Cohere2Config", {"sliding_window": 8, **_PAIR}),
    "olmo3_sw8": ("Olmo3Config", {"sliding_window": 8, **_PAIR}),
    "glm": ("GlmConfig", {"head_dim": 16, **_IDS}),
    "glm4": ("Glm4Config", {"head_dim": 16, **_IDS}),
}
# families whose modeling files pass position_ids to the attention function from transformers 5 on
NEEDS_V5 = {"cohere2_sw8"}
IMPLS = ["eager", "sdpa"]


def make_config(family: str, **overrides):
    if family in NEEDS_V5 and not V5:
        pytest.skip(f"{family} needs transformers 5 (the patch refuses it on {transformers.__version__}: tested)")
    cls_name, extra = FAMILIES[family]
    cfg = getattr(transformers, cls_name)(**{**_COMMON, **extra, **overrides})
    return cfg


def make_model(family: str, attn: str = "sdpa", dtype=torch.float32, seed: int = 0, **overrides):
    cfg = make_config(family, **overrides)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
    model.generation_config.pad_token_id = 0
    return model.to(dtype).eval()


def ids(batch: int = 1, length: int = 48, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (batch, length), generator=g)


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return request.param


@pytest.fixture(params=IMPLS)
def attn(request):
    return request.param


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``hf-logscale ARGS…`` in-process: (exit code, captured stdout/stderr)."""
    from hf_logscale.cli import main

    def run(*args: str):
        monkeypatch.setattr(sys, "argv", ["hf-logscale", *args])
        with pytest.raises(SystemExit) as e:
            main()
        return e.value.code, capsys.readouterr()

    return run
