"""Variant grammar, recipes, and RoPE baselines through transformers' own rope parameters."""

import math

import pytest
import torch
from conftest import V5, ids, make_model

import hf_logscale as hls
from hf_logscale.rope import attention_factor, rope_params

pytestmark = pytest.mark.core


@pytest.mark.parametrize(
    "spec, rope, scheme, params",
    [
        ("none", None, "none", {}),
        ("logn", None, "logn", {}),
        ("critical:tau=1.5", None, "critical", {"tau": 1.5}),
        ("yarn:factor=4", ("yarn", {"factor": 4.0}), "none", {}),
        ("yarn:factor=4,attention_factor=1+logn", ("yarn", {"factor": 4.0, "attention_factor": 1.0}), "logn", {}),
        ("dynamic:factor=2 + critical:tau=0.5", ("dynamic", {"factor": 2.0}), "critical", {"tau": 0.5}),
        ("llama4:a=0.2,F=1e+3", None, "llama4", {"a": 0.2, "F": 1000}),
        ("yarn:factor=8,truncate=false+ssmax", ("yarn", {"factor": 8.0, "truncate": False}), "ssmax", {}),
    ],
)
def test_grammar(spec, rope, scheme, params):
    v = hls.parse_variant(spec)
    assert (v.rope.kind, dict(v.rope.params)) == rope if rope else v.rope is None
    assert v.scale.scheme == scheme and dict(v.scale.params) == pytest.approx(params)
    assert hls.parse_variant(v.text) == v  # canonical form round-trips


def test_train_len_in_spec():
    v = hls.parse_variant("logn:train_len=8192")
    assert v.scale.train_len == 8192 and v.text == "logn:train_len=8192"


@pytest.mark.parametrize(
    "spec, match",
    [
        ("", "empty variant"),
        ("yran:factor=4", r"unknown variant part 'yran'. Did you mean yarn\?"),
        ("yarn", r"yarn: missing required parameter\(s\) factor"),
        ("yarn:factr=4", r"unknown parameter 'factr'. Did you mean factor\?"),
        ("yarn:factor=0.5", r"`factor` must be ≥ 1"),
        ("yarn:original_max_position_embeddings=1.5,factor=2", "must be an integer"),
        ("logn+yarn:factor=4", "the RoPE part comes first"),
        ("logn+ssmax", "only one scheme part"),
        ("yarn:factor=2+linear:factor=2+logn", "at most one RoPE part and one scheme part"),
        ("critical:tau", "expected key=value"),
        ("critical:tau=abc", "is not a number"),
        ("critical:tau=-1", "`tau` must be a finite number ≥ 0 and ≤ 100"),
        ("@nope", "unknown recipe 'nope'; shipped recipes: critical"),
        ("longrope:short_factor=1", "must be a list of numbers"),
    ],
)
def test_grammar_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        hls.parse_variant(spec)


REQUIRED_RECIPES = {"qwen-logn", "critical", "ssmax", "llama4-temperature", "yarn-x4", "yarn-x4-logn"}


def test_shipped_recipes_load_by_name():
    assert REQUIRED_RECIPES <= set(hls.recipe_names())
    for name in hls.recipe_names():
        v = hls.parse_variant(f"@{name}")
        assert v.name == name and v.label == f"@{name}"
    v = hls.load_recipe("yarn-x4-logn")
    assert v.rope.kind == "yarn" and v.rope.params == {"attention_factor": 1.0, "factor": 4.0}
    assert v.scale.scheme == "logn"


@pytest.mark.parametrize(
    "text, match",
    [
        ('scheme = "logn"\n', r"bad\.toml: unknown field\(s\) scheme"),
        ('[scale]\nscheme = "logn"\ntau = 2\n', r"bad\.toml: \[scale\]: unknown field\(s\) tau"),
        (
            '[scale]\nscheme = "critical"\ntau = -2\n',
            r"bad\.toml: critical: `tau` must be a finite number ≥ 0 and ≤ 100",
        ),
        ("[rope]\nfactor = 4\n", r"bad\.toml: \[rope\]\.kind is required"),
        ('[scale]\nscheme = "lgn"\n', r"bad\.toml: \[scale\]\.scheme: unknown scheme 'lgn'"),
        ("[scale\n", r"bad\.toml: not valid TOML"),
    ],
)
def test_recipe_errors_name_file_and_field(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        hls.load_recipe(str(path))


def test_recipe_file_with_layers_and_lists(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        '[scale]\nscheme = "critical"\ntau = 0.5\nlayers = [0]\n'
        '[rope]\nkind = "longrope"\nfactor = 2\nshort_factor = [1.0, 1.0]\nlong_factor = [2.0, 2.0]\n'
    )
    v = hls.parse_variant(f"@{path}")
    assert v.scale.layers == (0,) and v.rope.params["long_factor"] == [2.0, 2.0]


def _theta(config):
    return rope_params(config)["rope_theta"]


@torch.no_grad()
def test_yarn_changes_rope_keeps_theta_and_restores_bit_identically():
    model = (
        make_model("qwen3", rope_theta=1e6, max_position_embeddings=64)
        if not V5
        else make_model(
            "qwen3", rope_parameters={"rope_type": "default", "rope_theta": 1e6}, max_position_embeddings=64
        )
    )
    x = ids()
    before = model(x).logits
    rotary = model.model.rotary_emb
    hls.patch(model, "yarn:factor=4")
    params = rope_params(model.config)
    assert params["rope_type"] == "yarn" and params["factor"] == 4.0
    assert params["original_max_position_embeddings"] == 64 and model.config.max_position_embeddings == 256
    assert _theta(model.config) == 1e6
    assert attention_factor(model) == pytest.approx(0.1 * math.log(4) + 1, rel=1e-12)
    assert model.model.rotary_emb is not rotary
    yarn = model(x).logits
    assert not torch.equal(yarn, before)
    report = hls.describe(model)
    assert report.rope_attention_factor == pytest.approx(0.1 * math.log(4) + 1)
    assert report.rows[0]["effective"] == pytest.approx((0.1 * math.log(4) + 1) ** 2)
    # attention_factor=1 really removes the temperature: same frequencies, logits differ from YaRN's
    hls.patch(model, "yarn:factor=4,attention_factor=1")
    assert attention_factor(model) == 1.0
    assert not torch.equal(model(x).logits, yarn)
    hls.unpatch(model)
    assert model.model.rotary_emb is rotary
    assert rope_params(model.config)["rope_type"] == "default" and _theta(model.config) == 1e6
    assert model.config.max_position_embeddings == 64
    assert torch.equal(model(x).logits, before)


@pytest.mark.parametrize("spec", ["dynamic:factor=2", "linear:factor=2", "llama3:factor=8"])
@torch.no_grad()
def test_other_rope_kinds_apply_and_restore(spec):
    model = make_model("llama", max_position_embeddings=32)
    x = ids()
    before = model(x).logits
    hls.patch(model, spec)
    assert rope_params(model.config)["rope_type"] == spec.split(":")[0]
    assert not torch.equal(model(x).logits, before)
    hls.unpatch(model)
    assert torch.equal(model(x).logits, before)


def test_rope_errors_from_transformers_leave_model_untouched():
    model = make_model("llama", max_position_embeddings=32)
    bad = hls.Variant(rope=hls.RopeSetting("longrope", {"short_factor": [1.0], "long_factor": [1.0], "factor": 2}))
    with pytest.raises(ValueError, match=r"longrope: `short_factor` must have 8 entries \(rotary dim / 2\), got 1"):
        hls.patch(model, bad)
    assert rope_params(model.config)["rope_type"] == "default" and not hls.is_patched(model)
    good = hls.RopeSetting("longrope", {"short_factor": [1.0] * 8, "long_factor": [2.0] * 8, "factor": 2})
    hls.patch(model, hls.Variant(rope=good))
    assert rope_params(model.config)["rope_type"] == "longrope" and model.config.max_position_embeddings == 64
    assert attention_factor(model) == pytest.approx(math.sqrt(1 + math.log(2) / math.log(32)))  # LongRoPE's own
    hls.unpatch(model)


def test_rope_rollback_when_transformers_rejects(monkeypatch):
    import hf_logscale.rope as rope

    model = make_model("llama", max_position_embeddings=32)
    before = (rope_params(model.config), model.config.max_position_embeddings, model.model.rotary_emb)

    def boom(slots, config):
        raise RuntimeError("rotary init failed")

    monkeypatch.setattr(rope, "_rebuild", boom)
    with pytest.raises(ValueError, match="transformers rejected the RoPE setting 'yarn:factor=4.0': rotary init"):
        hls.patch(model, "yarn:factor=4")
    assert (rope_params(model.config), model.config.max_position_embeddings, model.model.rotary_emb) == before
    assert not hls.is_patched(model)


def test_other_kind_does_not_inherit_base_rope_keys():
    llama3 = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32,
    }
    if V5:
        model = make_model("llama", max_position_embeddings=256, rope_parameters={**llama3, "rope_theta": 5e5})
    else:
        model = make_model("llama", max_position_embeddings=256, rope_scaling=llama3, rope_theta=5e5)
    hls.patch(model, "dynamic:factor=2")
    params = rope_params(model.config)
    assert params["rope_type"] == "dynamic" and params["factor"] == 2.0 and params["rope_theta"] == 5e5
    assert "low_freq_factor" not in params and "type" not in params
    # dynamic NTK takes its original length from max_position_embeddings, set to L; a llama3-rope model was
    # trained at its extended length, so L = 256 (not the original 32)
    assert hls.describe(model).train_len == 256 and model.config.max_position_embeddings == 256
    hls.unpatch(model)
    assert rope_params(model.config)["rope_type"] == "llama3" and model.config.max_position_embeddings == 256


def test_recipe_tables_must_be_tables(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("scale = 5\n")
    with pytest.raises(ValueError, match=r"bad\.toml: `scale` must be a table"):
        hls.load_recipe(str(path))
