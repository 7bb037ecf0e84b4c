"""The injection, against unpatched models and the independent float64 reference, on every family × backend."""

import pytest
import torch
import transformers
from conftest import V5, ids, make_model
from reference import ref_scale, reference_logits

import hf_logscale as hls

pytestmark = pytest.mark.core

L = 16  # small training length so that a 48-token input crosses it
# every built-in scheme, with parameters that make it bite within 48 tokens
SCHEMES = {
    "none": {},
    "logn": {},
    "critical": {"tau": 2.0},
    "ssmax": {},
    "llama4": {"a": 0.5, "F": 8},
    "yarn-temp": {"f": 4.0},
    "power": {"p": 2.0},
}


def cfg(name, **kw):
    return hls.LogScaleConfig(
        scheme=name, train_len=L if name not in ("llama4", "yarn-temp", "none") else None, params=SCHEMES[name], **kw
    )


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@torch.no_grad()
def test_identity_scale_is_bit_identical_and_unpatch_restores(family, attn):
    model = make_model(family, attn)
    x = ids()
    before = model(x).logits
    for identity in (hls.LogScaleConfig("none"), hls.LogScaleConfig(scheme=lambda n: torch.ones_like(n))):
        hls.patch(model, identity)
        assert model.config._attn_implementation == f"logscale_{attn}"
        assert torch.equal(model(x).logits, before)
        hls.unpatch(model)
        assert model.config._attn_implementation == attn
        assert torch.equal(model(x).logits, before)
    hls.patch(model, cfg("logn"))
    assert not torch.equal(model(x).logits, before)
    hls.unpatch(model)
    assert torch.equal(model(x).logits, before)
    assert not hasattr(model.config, "logscale")


@torch.no_grad()
def test_logn_leaves_positions_up_to_L_unchanged(family, attn):
    model = make_model(family, attn)
    x = ids()
    before = model(x).logits
    after = hls.patch(model, cfg("logn"))(x).logits
    assert torch.equal(after[:, :L], before[:, :L])
    per_pos = (after[:, L:] - before[:, L:]).abs().amax(-1)
    assert per_pos.min() > 1e-3, per_pos


@pytest.mark.parametrize("scheme", list(SCHEMES))
@torch.no_grad()
def test_logits_match_float64_reference(family, attn, scheme):
    model = make_model(family, attn)
    x = ids()
    hls.patch(model, cfg(scheme))
    want = reference_logits(model, x, ref_scale(scheme, L, **SCHEMES[scheme]))
    assert rel(model(x).logits, want) <= 1e-5


@torch.no_grad()
def test_float64_model_matches_reference_tightly(family):
    # sdpa on float64 follows the reference to float64 rounding except for transformers' float32 RoPE tables
    model = make_model(family, "sdpa", dtype=torch.float64)
    x = ids()
    hls.patch(model, cfg("critical"))
    want = reference_logits(model, x, ref_scale("critical", L, **SCHEMES["critical"]))
    assert rel(model(x).logits, want) <= 1e-5


@torch.no_grad()
def test_layer_selection_scales_only_chosen_layers(family, attn):
    model = make_model(family, attn)
    x = ids()
    hls.patch(model, cfg("power"), layers=[1])
    assert hls.describe(model).patched_layers == [1]
    want = reference_logits(model, x, ref_scale("power", L, **SCHEMES["power"]), layers={1})
    assert rel(model(x).logits, want) <= 1e-5


@torch.no_grad()
def test_generate_with_cache_equals_full_recomputation(family, attn):
    model = make_model(family, attn)
    hls.patch(model, cfg("critical"))
    prompt = ids(length=12)
    out = model.generate(prompt, max_new_tokens=30, do_sample=False, output_logits=True, return_dict_in_generate=True)
    seq = prompt
    for step, step_logits in enumerate(out.logits):
        full = model(seq, use_cache=False).logits[:, -1]
        assert (step_logits - full).abs().max() <= 1e-4, step
        seq = torch.cat([seq, full.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out.sequences, seq)  # same tokens as the no-cache greedy loop


def _left_pad(rows):
    T = max(len(r) for r in rows)
    batch = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, T - len(r) :] = r
        mask[i, T - len(r) :] = 1
    return batch, mask


@torch.no_grad()
def test_left_padded_batch_equals_rows_alone(family, attn):
    model = make_model(family, attn)
    hls.patch(model, cfg("critical"))
    rows = [ids(length=n, seed=n)[0] for n in (40, 27, 13)]
    batch, mask = _left_pad(rows)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(batch, attention_mask=mask, position_ids=pos).logits
    want = reference_logits(model, batch, ref_scale("critical", L, **SCHEMES["critical"]), padding_mask=mask)
    for i, r in enumerate(rows):
        alone = model(r[None]).logits[0]
        assert (logits[i, -len(r) :] - alone).abs().max() <= 1e-5
        ref = want[i, -len(r) :]
        assert ((logits[i, -len(r) :].double() - ref).abs().max() / ref.abs().max()) <= 1e-5
    # batched generate (positions from the mask) equals single generate
    gen = model.generate(batch, attention_mask=mask, max_new_tokens=12, do_sample=False)
    for i, r in enumerate(rows):
        single = model.generate(r[None], max_new_tokens=12, do_sample=False)
        assert torch.equal(gen[i, -12:], single[0, -12:])


def test_inference_mode_and_autograd_agree():
    model = hls.patch(make_model("llama"), cfg("critical"))
    x = ids()
    with torch.inference_mode():
        a = model(x).logits
    b = model(x).logits
    b.sum().backward()  # gradients flow through the scaled query
    assert torch.equal(a, b.detach())
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


@torch.no_grad()
def test_two_models_do_not_interfere_and_patches_do_not_stack():
    a, b = make_model("llama"), make_model("llama")
    x = ids()
    hls.patch(a, cfg("logn"))
    a_alone = a(x).logits
    hls.patch(b, cfg("critical"))
    assert torch.equal(a(x).logits, a_alone)
    want_b = reference_logits(b, x, ref_scale("critical", L, **SCHEMES["critical"]))
    assert rel(b(x).logits, want_b) <= 1e-5
    # patching again replaces: logn over critical equals logn alone, and logn twice equals logn once
    hls.patch(b, cfg("logn"))
    assert torch.equal(b(x).logits, a_alone)
    hls.patch(b, cfg("logn"))
    assert torch.equal(b(x).logits, a_alone)


@torch.no_grad()
def test_context_manager_restores_on_exit_and_error():
    model = make_model("qwen2")
    x = ids()
    before = model(x).logits
    with hls.patched(model, cfg("logn")) as m:
        assert hls.is_patched(m)
    assert not hls.is_patched(model) and torch.equal(model(x).logits, before)
    with pytest.raises(RuntimeError, match="boom"):
        with hls.patched(model, "yarn:factor=4+logn:train_len=16"):
            raise RuntimeError("boom")
    assert not hls.is_patched(model) and torch.equal(model(x).logits, before)
    # a patch active before the block comes back after it
    hls.patch(model, cfg("logn"))
    logn = model(x).logits
    with hls.patched(model, cfg("ssmax")):
        assert not torch.equal(model(x).logits, logn)
    assert torch.equal(model(x).logits, logn)


def test_unsupported_architecture_and_bad_selection():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    supported = "llama, mistral, ministral, ministral3, mixtral, qwen2, qwen2_moe, qwen3, qwen3_moe, smollm3"
    with pytest.raises(ValueError, match=rf"unsupported architecture 'gpt2'.*supports {supported}"):
        hls.patch(gpt2, cfg("logn"))
    # Llama 4 carries a length scale of its own (temperature tuning by cache index) and chunked attention
    with torch.device("meta"):
        llama4 = transformers.AutoModelForCausalLM.from_config(
            transformers.Llama4TextConfig(
                num_hidden_layers=2,
                hidden_size=64,
                intermediate_size=64,
                intermediate_size_mlp=64,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,
                vocab_size=64,
                num_local_experts=2,
            )
        )
    with pytest.raises(ValueError, match="llama4_text is not supported: Llama 4 applies its own length scale"):
        hls.patch(llama4, cfg("logn"))
    model = make_model("llama")
    with pytest.raises(ValueError, match=r"layer\(s\) 5 do not exist; the model has 2 attention layers \(0–1\)"):
        hls.patch(model, cfg("logn"), layers=[0, 5])
    with pytest.raises(ValueError, match="selected no attention layer"):
        hls.patch(model, hls.LogScaleConfig("logn", train_len=L, layers=lambda i: False))
    assert not hls.is_patched(model)
    with pytest.raises(ValueError, match="not patched"):
        hls.unpatch(model)


def test_train_len_resolution_and_verify():
    model = make_model("llama", max_position_embeddings=64)
    hls.patch(model, "logn")
    report = hls.describe(model)
    assert (report.train_len, report.train_len_source) == (64, "config max_position_embeddings, unverified")
    assert [r["n"] for r in report.rows] == [32, 64, 128, 256, 512, 1024]
    assert [r["s"] for r in report.rows] == pytest.approx([1, 1, 7 / 6, 8 / 6, 9 / 6, 10 / 6], rel=1e-12)
    check = hls.verify(model)
    assert check.ok, check.message
    assert check.seen[0] == pytest.approx([1, 1, 7 / 6, 8 / 6, 9 / 6, 10 / 6], rel=1e-6)


def test_sliding_window_clips_n_in_verify():
    model = make_model("mistral_sw24", max_position_embeddings=16)
    hls.patch(model, "logn")
    check = hls.verify(model)
    assert check.ok
    capped = ref_scale("logn", 16)(24)
    assert max(check.seen[0]) == pytest.approx(capped, rel=1e-6)
    assert hls.describe(model).windows == {0: 24, 1: 24}


@torch.no_grad()
def test_failed_patch_keeps_the_previous_one():
    model = make_model("llama", max_position_embeddings=16)
    x = ids()
    hls.patch(model, "yarn:factor=4+logn")
    active = model(x).logits
    with pytest.raises(ValueError, match="must have 8 entries"):
        hls.patch(
            model,
            hls.Variant(rope=hls.RopeSetting("longrope", {"short_factor": [1.0], "long_factor": [1.0], "factor": 2})),
        )
    assert hls.patch_state(model).variant.text == "yarn:factor=4.0+logn"
    assert torch.equal(model(x).logits, active)
    with pytest.raises(ValueError, match="selected no attention layer"):
        with hls.patched(model, hls.LogScaleConfig("ssmax", layers=lambda i: False)):
            pass
    assert torch.equal(model(x).logits, active)
    # a RoPE patch active before a block comes back after it
    with hls.patched(model, "critical:tau=2"):
        assert hls.patch_state(model).rope is None
    assert hls.patch_state(model).rope is not None and torch.equal(model(x).logits, active)


@pytest.mark.skipif(not V5, reason="proportional RoPE (NoPE / p-RoPE configs) is in transformers 5")
@pytest.mark.parametrize("fraction", [0.0, 0.25])
@torch.no_grad()
def test_nope_and_partial_rope_models_match_reference(fraction, attn):
    rope = {"rope_type": "proportional", "rope_theta": 10000.0, "partial_rotary_factor": fraction}
    model = make_model("llama", attn, rope_parameters=rope)
    x = ids()
    before = model(x).logits
    assert rel(before, reference_logits(model, x)) <= 1e-5
    hls.patch(model, cfg("critical"))
    assert rel(model(x).logits, reference_logits(model, x, ref_scale("critical", L, **SCHEMES["critical"]))) <= 1e-5
    hls.unpatch(model)
    assert torch.equal(model(x).logits, before)


@torch.no_grad()
def test_per_layer_parameters_apply_save_and_reload(family, tmp_path):
    """A scheme parameter per layer (calibrate --per-layer writes such recipes): each layer its own s(n)."""
    model = make_model(family, "sdpa")
    x = ids()
    scale = hls.LogScaleConfig("critical", train_len=L, tau=0.5, layer_params={1: {"tau": 2.0}})
    hls.patch(model, scale)
    want = reference_logits(model, x, {0: ref_scale("critical", L, tau=0.5), 1: ref_scale("critical", L, tau=2.0)})
    got = model(x).logits
    assert rel(got, want) <= 1e-5
    assert rel(got, reference_logits(model, x, ref_scale("critical", L, tau=0.5))) > 1e-3  # layer 1 differs
    report = hls.describe(model)
    assert hls.verify(model).ok and report.layer_params == {1: {"tau": 2.0}}
    taus = {0: 0.5, 1: 2.0}
    for window in set(report.windows.values()):  # the table spans the layers' own scales, per window
        key = "s" if window is None else f"s@window{window}"
        for row in report.rows:
            n = row["n"] if window is None else min(row["n"], window)
            s = [ref_scale("critical", L, tau=taus[i])(n) for i, w in report.windows.items() if w == window]
            assert (row[f"{key}:min"], row[f"{key}:max"]) == pytest.approx((min(s), max(s)), rel=1e-12)
    assert hls.parse_variant(scale.text).scale == scale  # the grammar carries it: critical:...,per_layer=1/tau=2.0
    recipe = tmp_path / "per-layer.toml"
    recipe.write_text('[scale]\nscheme = "critical"\ntrain_len = 16\ntau = 0.5\n[scale.per_layer]\n1 = { tau = 2.0 }\n')
    assert hls.load_recipe(str(recipe)).scale == scale
    model.config._name_or_path = str(tmp_path / "base")
    model.save_pretrained(tmp_path / "base")
    hls.save_patched(model, tmp_path / "patched")
    loaded, _ = hls.load(tmp_path / "patched")
    assert torch.equal(loaded(x).logits, got)


@torch.no_grad()
def test_scales_are_computed_once_per_forward_for_all_layers():
    """Layers with equal schemes share one entry of the scale cache (it is keyed by the scheme's value)."""
    model = make_model("llama", num_hidden_layers=4)
    hls.patch(model, cfg("critical"))
    model(ids())
    state = hls.patching.patch_state(model)
    assert len(state.scale._cache) == 1
