"""Exactness on real pretrained weights: SmolLM2-135M-Instruct (30 layers, GQA 9/3, head_dim 64, tied embeddings),
dequantised from its GGUF file and cast to float64, against the independent float64 forward. ``train_len`` is
forced to 32 so that a 192-token input reaches n/L = 6. The file is fetched by ``make test`` (``hf-logscale fetch
smollm2-135m``); without it these tests fail with that command rather than pass unseen."""

import json

import pytest
import torch
from reference import ref_scale, reference_logits
from test_patching import SCHEMES, rel

import hf_logscale as hls
from hf_logscale.pretrained import named_model_path

L = 32
T = 192
BOUND = 3e-5


@pytest.fixture(scope="module")
def smol():
    try:
        named_model_path("smollm2-135m")
    except (FileNotFoundError, ValueError) as err:
        pytest.fail(f"the real-model tests need SmolLM2: {err}")
    model, tok = hls.load("smollm2-135m", dtype="float64", attn_implementation="sdpa")
    from hf_logscale.data.sample import sample_corpus

    text = next(d.text for d in sample_corpus("heldout") if d.name == "Luke")
    x = tok(text, return_tensors="pt", add_special_tokens=False).input_ids[:, :T]
    assert x.shape == (1, T)
    with torch.no_grad():
        base = model(x).logits
    return model, tok, x, base


def config(scheme: str) -> hls.LogScaleConfig:
    own_len = scheme not in ("llama4", "yarn-temp", "none")
    return hls.LogScaleConfig(scheme=scheme, train_len=L if own_len else None, params=SCHEMES[scheme])


def test_loads_as_the_published_architecture(smol):
    model, tok, _, _ = smol
    c = model.config
    assert (c.model_type, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads) == ("llama", 30, 9, 3)
    assert (c.head_dim, c.vocab_size, c.tie_word_embeddings) == (64, 49152, True)
    assert hls.models.train_length(model).value == 8192
    assert len(tok) == 49152 and tok.decode(tok("In the beginning").input_ids) == "In the beginning"


@pytest.mark.parametrize("scheme", list(SCHEMES))
@torch.no_grad()
def test_every_scheme_matches_the_float64_reference(smol, scheme):
    model, _, x, base = smol
    with hls.patched(model, config(scheme)):
        got = model(x).logits
    scale = ref_scale(scheme, L, **SCHEMES[scheme])
    # float64 throughout except transformers' RoPE tables (float32): measured 0.3e-5 to 1.4e-5 over 30 layers
    assert rel(got, reference_logits(model, x, scale)) <= BOUND
    if scheme != "none":  # the scale is visible: rows beyond L move
        assert rel(got, base) > 100 * BOUND
    if scheme == "critical":  # and the bound can tell n counted one key off
        assert rel(got, reference_logits(model, x, lambda n: scale(n + 1))) > 10 * BOUND


@torch.no_grad()
def test_identity_is_bit_identical_and_unpatch_restores(smol):
    model, _, x, _ = smol
    before = model(x).logits
    with hls.patched(model, "none"):
        assert torch.equal(model(x).logits, before)
    hls.patch(model, config("critical"))
    assert not torch.equal(model(x).logits, before)
    hls.unpatch(model)
    assert torch.equal(model(x).logits, before)


@torch.no_grad()
def test_cached_generate_equals_recomputation(smol):
    model, _, x, _ = smol
    prompt = x[:, :40]
    with hls.patched(model, config("critical")):
        out = model.generate(
            prompt, max_new_tokens=12, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
        seq = prompt
        for step_logits in out.logits:
            full = model(seq, use_cache=False).logits[:, -1]
            # generate hands back float32 logits: equal up to that rounding (|logit| < 30)
            assert (step_logits - full).abs().max() <= 1e-5, "cached step differs from recomputation"
            seq = torch.cat([seq, full.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out.sequences, seq)


@torch.no_grad()
def test_left_padded_batch_equals_rows_alone(smol):
    model, _, x, _ = smol
    rows = [x[0, :96], x[0, 10:60], x[0, 100:130]]
    width = max(len(r) for r in rows)
    batch = torch.full((len(rows), width), 2, dtype=torch.long)
    mask = torch.zeros_like(batch)
    for i, r in enumerate(rows):
        batch[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with hls.patched(model, config("critical")):
        logits = model(batch, attention_mask=mask, position_ids=pos).logits
        for i, r in enumerate(rows):
            alone = model(r[None]).logits[0]
            assert (logits[i, -len(r) :] - alone).abs().max() <= 1e-9


@torch.no_grad()
def test_patched_folder_names_the_checkpoint_and_reloads_identically(smol, tmp_path):
    model, _, x, _ = smol
    with hls.patched(model, "yarn:factor=2,attention_factor=1+critical:tau=0.5,train_len=32"):
        want = model(x).logits
        hls.save_patched(model, tmp_path / "light")
    saved = json.loads((tmp_path / "light" / "logscale_config.json").read_text())
    assert saved["base_model_name_or_path"] == "smollm2-135m"
    again, _ = hls.load(tmp_path / "light", dtype="float64", attn_implementation="sdpa")
    assert torch.equal(again(x).logits, want)
