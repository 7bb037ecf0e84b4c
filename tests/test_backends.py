"""Backends beyond eager and sdpa: flash (through a CPU stand-in kernel), flex, and 16-bit weights."""

import pytest
import torch
from conftest import ids, make_model
from reference import ref_scale, reference_logits
from standin_flash import register
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

import hf_logscale as hls

pytestmark = pytest.mark.core

L = 16


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.fixture(params=["flash_attention_2", "flash_attention_3", "kernels-community/flash-attn3"])
def flash(request, monkeypatch):
    """The CPU stand-in, registered under each flash name transformers dispatches by."""
    return register(monkeypatch, request.param)


def flash_model(family, kernel):
    model = make_model(family, "sdpa")
    model.config._attn_implementation = kernel.name  # what loading with the real kernel on a GPU gives
    return model


@pytest.mark.parametrize("family", ["llama", "qwen3", "mistral_sw24", "qwen2_sw24"])
@torch.no_grad()
def test_flash_backend_dispatches_scales_and_masks(family, flash):
    model = flash_model(family, flash)
    x = ids()
    before = model(x).logits
    assert set(flash.looked_up) == {flash.name}
    # the stand-in itself is right: it equals the float64 reference of the unpatched model
    assert rel(before, reference_logits(model, x)) <= 1e-5

    hls.patch(model, hls.LogScaleConfig("none"))
    assert model.config._attn_implementation.startswith("logscale_") and "flash" in model.config._attn_implementation
    flash.looked_up.clear()
    assert torch.equal(model(x).logits, before)
    assert set(flash.looked_up) == {flash.name}  # the kernel is looked up by the base name, not the wrapper's

    hls.patch(model, hls.LogScaleConfig("critical", train_len=L, params={"tau": 2.0}))
    got = model(x).logits
    assert rel(got, reference_logits(model, x, ref_scale("critical", L, tau=2.0))) <= 1e-5
    assert hls.verify(model).ok
    report = hls.describe(model)
    assert report.attn_implementation.endswith(f"→ {flash.name}")

    # left padding: flash gets the 2-D padding mask, rows equal the reference
    rows = [ids(length=n, seed=n)[0] for n in (40, 27)]
    batch = torch.zeros(2, 40, dtype=torch.long)
    mask = torch.zeros(2, 40, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, 40 - len(r) :], mask[i, 40 - len(r) :] = r, 1
    flash.masks.clear()
    padded = model(batch, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    assert all(m is not None and m.shape == (2, 40) for m in flash.masks)
    want = reference_logits(model, batch, ref_scale("critical", L, tau=2.0), padding_mask=mask)
    for i, r in enumerate(rows):
        assert rel(padded[i, -len(r) :], want[i, -len(r) :]) <= 1e-5

    # cached generation through the flash path equals recomputation
    prompt = ids(length=10)
    out = model.generate(prompt, max_new_tokens=12, do_sample=False, output_logits=True, return_dict_in_generate=True)
    full = model(out.sequences[:, :-1], use_cache=False).logits[:, 9:]
    assert (torch.stack(out.logits, 1) - full).abs().max() <= 1e-4

    hls.unpatch(model)
    assert model.config._attn_implementation == flash.name
    assert torch.equal(model(x).logits, before)


def test_flash_without_kernel_is_refused_clearly(tmp_path):
    """On a machine without the flash-attn package, loading with it fails with transformers' own message."""
    model = make_model("llama")
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"attn_implementation='flash_attention_2'.*FlashAttention2.*--attn sdpa"):
        hls.load(tmp_path, attn_implementation="flash_attention_2")


# ---- 16-bit weights -------------------------------------------------------------------------------------------

CRITICAL = hls.LogScaleConfig("critical", train_len=L, params={"tau": 2.0})


@pytest.fixture
def recorded_queries(monkeypatch):
    """The queries the sdpa backend receives (after any scaling), in call order."""
    seen = []
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def recorder(module, query, *args, **kwargs):
        seen.append(query.detach().clone())
        return sdpa(module, query, *args, **kwargs)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", recorder)
    return seen


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_16_bit_queries_are_scaled_in_float32_and_rounded_once(dtype, recorded_queries):
    model = make_model("llama", dtype=dtype)
    x = ids()
    model(x)
    plain = recorded_queries[0]  # layer 0's query, unscaled: [1, H, T, D]
    recorded_queries.clear()
    hls.patch(model, CRITICAL)
    model(x)
    scaled = recorded_queries[0]
    s = torch.tensor([ref_scale("critical", L, tau=2.0)(n) for n in range(1, x.shape[1] + 1)], dtype=torch.float64)
    s32 = s.float()[None, None, :, None]
    assert torch.equal(scaled, (plain.float() * s32).to(dtype))  # float64 formula, float32 product, one rounding
    assert not torch.equal(scaled, plain * s32.to(dtype))  # s rounded to 16 bits first would differ: the test can tell


@pytest.mark.parametrize("family", ["llama", "qwen3", "mistral_sw24"])
@pytest.mark.parametrize(("dtype", "bound"), [(torch.bfloat16, 0.1), (torch.float16, 0.025)])
@torch.no_grad()
def test_16_bit_logits_against_float64_reference(family, dtype, bound):
    """Measured max relative error on these models: bfloat16 1.6e-2–4.4e-2 unpatched, 2.0e-2–9.3e-2 patched;
    float16 2.7e-3–5.5e-3 unpatched, 4.0e-3–2.1e-2 patched (τ = 2 sharpens the softmax)."""
    model = make_model(family, dtype=dtype)
    x = ids()
    assert rel(model(x).logits, reference_logits(model, x)) <= bound
    hls.patch(model, CRITICAL)
    assert rel(model(x).logits, reference_logits(model, x, ref_scale("critical", L, tau=2.0))) <= bound


# ---- flex attention -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "mistral_sw24"])
@torch.no_grad()
def test_flex_attention_matches_float64_reference(family):
    """flex_attention compiles on first use (about 10 s per model on CPU)."""
    model = make_model(family, "flex_attention")
    x = ids()
    before = model(x).logits
    hls.patch(model, CRITICAL)
    assert model.config._attn_implementation == "logscale_flex_attention"
    assert rel(model(x).logits, reference_logits(model, x, ref_scale("critical", L, tau=2.0))) <= 1e-5
    hls.unpatch(model)
    assert torch.equal(model(x).logits, before)
