"""The float64 reference against transformers' own forward, for the families beyond Llama / Qwen / Mistral.

Each case is a tiny random model built from transformers' config class (hidden 64, 4 heads / 2 KV heads, head_dim
16, vocab 256, initializer_range 0.2, seed 0), with enough layers to hold both its sliding and its global layers and
a window of 8 that 48 tokens cross. Norm weights and biases start at 0 or 1, so they are jittered (fixed seed) for
the reference to read them. No patch is involved: the patch library is tested against this reference elsewhere.
"""

import math
import warnings

import pytest
import torch
import transformers
from conftest import V5, ids
from reference import reference_logits
from transformers import AutoModelForCausalLM

pytestmark = pytest.mark.core

BOUND = 3e-5  # as in test_zoo: float32 model against the float64 reference

COMMON = dict(
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=128,
    vocab_size=256,
    initializer_range=0.2,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
VISION = dict(
    model_type="siglip_vision_model",
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    image_size=28,
    patch_size=14,
)
SHORT, LONG = [1.0, 1.1, 1.3, 1.6, 2.0, 2.5], [1.0, 1.5, 2.5, 4.0, 6.0, 9.0]  # LongRoPE: 6 = 0.75·16 / 2 factors


def _longrope(original: int, maximum: int) -> dict:
    """Phi-4-mini's shape: LongRoPE on the first 0.75 of each head, over ``original`` up to ``maximum``."""
    return dict(
        partial_rotary_factor=0.75,
        rope_scaling={"type": "longrope", "short_factor": SHORT, "long_factor": LONG},
        original_max_position_embeddings=original,
        max_position_embeddings=maximum,
    )


# 5 sliding : 1 global; the global layer's linear ×8 and base 1e6, the local layers' base 1e4
GEMMA3 = dict(
    num_hidden_layers=6,
    sliding_window=8,
    query_pre_attn_scalar=24,
    rope_theta=1e6,
    rope_local_base_freq=1e4,
    rope_scaling={"rope_type": "linear", "factor": 8.0},
)
# name -> (config class, overrides, needs transformers 5). Rope settings are given the 4.x way (rope_theta,
# rope_scaling, rope_local_base_freq), which transformers 5 converts, unless the case is about the 5.x form.
CASES = {
    # sliding on even layers (0, 2); soft caps small enough to bite (the logits reach ~9 here, the published 50 / 30
    # would not act), query_pre_attn_scalar ≠ head_dim
    "gemma2": (
        "Gemma2Config",
        dict(sliding_window=8, query_pre_attn_scalar=24, attn_logit_softcapping=5.0, final_logit_softcapping=5.0),
        False,
    ),
    "gemma3_text": (
        "Gemma3TextConfig",
        GEMMA3,
        False,
    ),
    # transformers 5's own form: one rope dict per layer type (YaRN with its attention factor on the global layer)
    "gemma3_text-per-type-rope": (
        "Gemma3TextConfig",
        dict(
            num_hidden_layers=6,
            sliding_window=8,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                "full_attention": {
                    "rope_type": "yarn",
                    "rope_theta": 1e6,
                    "factor": 4.0,
                    "original_max_position_embeddings": 1024,
                },
            },
            max_position_embeddings=4096,
        ),
        True,
    ),
    # Gemma 3 4B and up: an image-text model around the same language model (text-only input)
    "gemma3-image-text": (
        "Gemma3Config",
        GEMMA3,
        False,
    ),
    # sliding on even layers, attention sinks, biases on q/k/v/o, YaRN ×32 with truncate=False, 4 experts top-2
    "gpt_oss": ("GptOssConfig", dict(sliding_window=8, num_local_experts=4, num_experts_per_tok=2), False),
    # 48 positions > 32 → long factors, and the attention factor √(1 + ln(128/32) / ln 32)
    "phi3-longrope-long": ("Phi3Config", _longrope(original=32, maximum=128), False),
    # the same with 48 positions ≤ 64 → short factors
    "phi3-longrope-short": ("Phi3Config", _longrope(original=64, maximum=256), False),
    # Phi-3-mini's shape: full rotary, one sliding window on every layer
    "phi3-window": ("Phi3Config", dict(sliding_window=8), False),
    # 3 sliding (RoPE, interleaved pairs) : 1 global (NoPE); parallel attention + MLP; logit_scale
    "cohere2": ("Cohere2Config", dict(num_hidden_layers=4, sliding_window=8), False),
    "olmo2": ("Olmo2Config", {}, False),
    # 3 sliding : 1 global, YaRN ×8 on the global layer only
    "olmo3": (
        "Olmo3Config",
        dict(
            num_hidden_layers=4,
            sliding_window=8,
            rope_scaling={"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096},
            max_position_embeddings=32768,
        ),
        False,
    ),
    # Granite 3's multipliers, attention_multiplier = 1/head_dim instead of 1/√head_dim
    "granite": (
        "GraniteConfig",
        dict(embedding_multiplier=12.0, attention_multiplier=1 / 16, residual_multiplier=0.22, logits_scaling=8.0),
        False,
    ),
    "glm": ("GlmConfig", {}, False),  # partial_rotary_factor 0.5, interleaved pairs, bias on q/k/v
    "glm4": ("Glm4Config", {}, False),  # as GLM, plus post-self-attention and post-MLP norms
}


def model(name: str, attn: str = "eager"):
    cls, overrides, needs_v5 = CASES[name]
    if needs_v5 and not V5:
        pytest.skip("transformers 5's per-layer-type rope_parameters")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cls == "Gemma3Config":  # the settings go to the language model; a one-layer vision tower
            cfg = transformers.Gemma3Config(
                text_config={**COMMON, **overrides}, vision_config=VISION, mm_tokens_per_image=4
            )
        else:
            cfg = getattr(transformers, cls)(**{**COMMON, **overrides})
        torch.manual_seed(0)
        try:
            m = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
        except ValueError as e:
            if "does not support an attention implementation" in str(e):
                pytest.skip(f"{cls} has no {attn} attention in transformers {transformers.__version__}")
            raise
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # norms start at 1 (or 0 under Gemma's 1 + w) and biases at 0: move them
        for pname, p in m.named_parameters():
            if p.ndim == 1 or "bias" in pname:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return m.float().eval()


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", list(CASES))
@torch.no_grad()
def test_model_matches_float64_reference(name, attn):
    m = model(name, attn)
    x = ids()
    got = m(x).logits
    if name == "gemma2" and attn == "sdpa":  # built by transformers 4.x only (5 refuses SDPA for Gemma 2)
        m.config.attn_logit_softcapping = None  # 4.x runs it through SDPA, which drops the attention soft cap
    assert rel(got, reference_logits(m, x)) <= BOUND


@pytest.mark.parametrize("name", list(CASES))
@torch.no_grad()
def test_left_padding_matches_reference(name):
    m = model(name)
    rows = [ids(length=n, seed=n)[0] for n in (48, 31)]
    batch, mask = torch.zeros(2, 48, dtype=torch.long), torch.zeros(2, 48, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, 48 - len(r) :], mask[i, 48 - len(r) :] = r, 1
    got = m(batch, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    want = reference_logits(m, batch, padding_mask=mask)
    for i, r in enumerate(rows):
        assert rel(got[i, -len(r) :], want[i, -len(r) :]) <= BOUND


@pytest.mark.parametrize("name", list(CASES))
@torch.no_grad()
def test_scale_acts_on_the_token_logits_before_any_cap(name):
    """s(n) multiplies the query: on the first layer (the same input either way) a row's token logits are s times
    the unscaled ones before Gemma 2's soft cap (cap·tanh(s·x / cap), not s·cap·tanh(x / cap)), and gpt-oss's sink
    logit is never scaled (the captured logits have no sink column; the sink joins the softmax as it is)."""
    m = model(name)
    x = ids()
    plain, scaled = {}, {}
    base = reference_logits(m, x, attention=plain)
    assert rel(reference_logits(m, x, lambda n: 1.5, attention=scaled), base) > 1e-3
    before, after = plain[0], scaled[0]
    assert before.shape == (1, 4, 48, 48)  # [B, H, T, T]: token columns only
    seen = before.isfinite()
    assert torch.equal(seen, after.isfinite())
    before, after = before[seen], after[seen]
    cap = getattr(m.config, "attn_logit_softcapping", None) if m.config.model_type == "gemma2" else None
    if cap:  # undo the cap: s multiplied the logits inside it
        assert after.abs().max() > 0.5 * cap  # the cap bites
        before, after = cap * torch.atanh(before / cap), cap * torch.atanh(after / cap)
    assert after == pytest.approx(1.5 * before, rel=1e-9, abs=1e-12)


def test_longrope_attention_factor_and_factor_choice():
    """Phi-3's LongRoPE, as the reference computes it: 1 / (factor_j · θ^(2j/R)) over the R = 12 rotating dims, the
    long factors when the pass's largest position + 1 exceeds the original length, and the attention factor
    √(1 + ln(max / original) / ln original) on cos and sin."""
    from reference import _inv_freq, _rope_dict

    for name, factors, original in (("phi3-longrope-long", LONG, 32), ("phi3-longrope-short", SHORT, 64)):
        cfg = model(name).config
        inv, af = _inv_freq(cfg, _rope_dict(cfg), 16, 48)
        assert inv.tolist() == pytest.approx([1 / (f * 1e4 ** (2 * j / 12)) for j, f in enumerate(factors)])
        assert af == pytest.approx(math.sqrt(1 + math.log(4) / math.log(original)))
