"""Per-head scheme parameters: a parameter may list one value per query head (``critical:tau=[0.5 1 2 3]``, or
per layer), and each head's queries get their own s(n) — exact against the float64 reference on every backend."""

import pytest
import torch
from conftest import ids, make_model
from reference import ref_scale, reference_logits
from test_patching import rel

import hf_logscale as hls

L = 16


def per_head(taus):
    return lambda n: [ref_scale("critical", L, tau=t)(n) for t in taus]


@pytest.mark.parametrize("family", ["llama", "qwen3", "mistral_sw24"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@torch.no_grad()
def test_each_head_gets_its_own_scale(family, attn):
    model = make_model(family, attn)
    H = model.config.num_attention_heads
    first, second = [0.5 * (h + 1) for h in range(H)], [3.0 - 0.5 * h for h in range(H)]
    x = ids()
    cfg = hls.LogScaleConfig("critical", train_len=L, layer_params={0: {"tau": first}, 1: {"tau": second}})
    hls.patch(model, cfg)
    want = reference_logits(model, x, {0: per_head(first), 1: per_head(second)})
    assert rel(model(x).logits, want) <= 1e-5
    assert hls.verify(model).ok
    same = reference_logits(model, x, ref_scale("critical", L, tau=first[0]))  # a per-layer scale is not it
    assert rel(want, same) > 1e-3


def test_per_head_values_round_trip_through_the_grammar_and_a_saved_folder(tmp_path):
    v = hls.parse_variant("critical:train_len=16,per_layer=0/tau=[0.5 1 2 3];1/tau=[1 1 1 1.5]")
    assert v.scale.layer_params[0]["tau"] == (0.5, 1, 2, 3)
    assert hls.parse_variant(v.text) == v
    given = hls.Variant(scale=hls.LogScaleConfig("critical", tau=(0.5, 1.5)))
    assert hls.parse_variant(given.text) == given  # a tuple in Python, a list in text: the same config
    model, tok = hls.load()
    H = model.config.num_attention_heads
    hls.patch(model, hls.LogScaleConfig("critical", tau=[1.5] * H))
    hls.save_patched(model, tmp_path / "p")
    again, _ = hls.load(str(tmp_path / "p"))
    assert hls.patch_state(again).scheme.tau == (1.5,) * H


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: hls.LogScaleConfig("critical", train_len=L, tau=[1.0, 200.0]), "`tau` must be a finite number"),
        (lambda: hls.LogScaleConfig("critical", train_len=L, tau=[]), "one value per head"),
        (lambda: hls.parse_variant("critical:tau=[1 x]"), "value 'x' is not a number"),
    ],
)
def test_bad_per_head_values_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@torch.no_grad()
def test_a_head_count_that_does_not_match_the_layer_is_refused():
    model = make_model("llama")
    with pytest.raises(ValueError, match="lists 3 per-head values; the model has 4 query heads"):
        hls.patch(model, hls.LogScaleConfig("critical", train_len=L, tau=[1.0, 2.0, 3.0]))
    assert not hls.is_patched(model)
