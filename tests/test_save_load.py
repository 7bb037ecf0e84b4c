"""Save → load round trips: patched folder, merged folder, and save_pretrained of a patched model."""

import json

import pytest
import torch
from conftest import ids, make_model

import hf_logscale as hls
from hf_logscale.rope import rope_params

pytestmark = pytest.mark.core


@pytest.fixture
def base_dir(tmp_path):
    model = make_model("qwen2_sw24", max_position_embeddings=16)
    path = tmp_path / "base"
    model.save_pretrained(path)
    return path


SPECS = ["critical:tau=2", "yarn:factor=4,attention_factor=1+logn", "@yarn-x4"]


def assert_reload_matches(folder, model, base_dir, x, want):
    """Reloading ``folder`` restores ``model``'s patch and logits; unpatching it gives back the base exactly."""
    with pytest.warns(UserWarning):
        again, _ = hls.load(folder)
    assert_same_patch(again, model)
    assert torch.equal(again(x).logits, want)
    hls.unpatch(again)
    with pytest.warns(UserWarning):
        plain, _ = hls.load(base_dir)
    assert rope_params(again.config) == rope_params(plain.config)
    assert torch.equal(again(x).logits, plain(x).logits)


def assert_same_patch(again, model):
    a, b = hls.patch_state(again), hls.patch_state(model)
    assert (a.scheme, a.train_len, a.variant.rope, a.layers) == (b.scheme, b.train_len, b.variant.rope, b.layers)
    assert a.train_len_source == b.train_len_source == "config max_position_embeddings, unverified"


@pytest.mark.parametrize("spec", SPECS)
@torch.no_grad()
def test_patched_folder_round_trip(base_dir, tmp_path, spec):
    with pytest.warns(UserWarning, match="no usable tokenizer"):
        model, tok = hls.load(base_dir, variant=spec)
    x = ids()
    want = model(x).logits
    out = hls.save_patched(model, tmp_path / "patched", tok)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["logscale_config.json"]  # no weights copied
    data = json.loads((out / "logscale_config.json").read_text())
    assert data["base_model_name_or_path"] == str(base_dir.resolve()) and data["base_model_type"] == "qwen2"
    assert list(data) == sorted(data)
    assert_reload_matches(out, model, base_dir, x, want)


@pytest.mark.parametrize("spec", SPECS)
@torch.no_grad()
def test_merged_and_save_pretrained_round_trip(base_dir, tmp_path, spec):
    with pytest.warns(UserWarning):
        model, tok = hls.load(base_dir, variant=spec)
    x = ids()
    want = model(x).logits
    out = hls.save_patched(model, tmp_path / "merged", tok, merge=True)
    assert (out / "model.safetensors").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["logscale"]["spec"] == hls.patch_state(model).variant.label
    assert_reload_matches(out, model, base_dir, x, want)


def test_variant_argument_replaces_saved_patch(base_dir, tmp_path):
    with pytest.warns(UserWarning):
        model, _ = hls.load(base_dir, variant="yarn:factor=4+logn")
    out = hls.save_patched(model, tmp_path / "m", merge=True)
    with pytest.warns(UserWarning):
        again, _ = hls.load(out, variant="ssmax")
    state = hls.patch_state(again)
    assert state.variant.text == "ssmax" and state.rope is None
    assert rope_params(again.config)["rope_type"] == "default"


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot load model"):
        hls.load(tmp_path / "missing")
    bad = tmp_path / "adapter"
    bad.mkdir()
    (bad / "logscale_config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"logscale_config.json: missing `base_model_name_or_path`"):
        hls.load(bad)
    (bad / "logscale_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"logscale_config.json: not valid JSON"):
        hls.load(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="asked for CUDA"):
            hls.load(bad, device="cuda")


def test_adapter_over_a_merged_base_starts_from_the_base(base_dir, tmp_path):
    with pytest.warns(UserWarning):
        model, _ = hls.load(base_dir, variant="yarn:factor=4+logn")
    merged = hls.save_patched(model, tmp_path / "merged", merge=True)
    with pytest.warns(UserWarning):
        on_merged, _ = hls.load(merged, variant="ssmax")
    adapter = hls.save_patched(on_merged, tmp_path / "adapter")
    with pytest.warns(UserWarning):
        again, _ = hls.load(adapter)
        plain, _ = hls.load(base_dir, variant="ssmax")
    assert rope_params(again.config) == rope_params(plain.config)
    assert again.config.max_position_embeddings == plain.config.max_position_embeddings == 16
    x = ids()
    assert torch.equal(again(x).logits, plain(x).logits)


def test_saving_needs_a_patch_and_a_base(tmp_path):
    model = make_model("llama")
    with pytest.raises(ValueError, match="not patched"):
        hls.save_patched(model, tmp_path / "x")
    hls.patch(model, "logn")
    with pytest.raises(ValueError, match="no base name or path"):
        hls.save_patched(model, tmp_path / "x")
    with pytest.raises(ValueError, match="cannot be serialised"):
        hls.patch(model, hls.LogScaleConfig(scheme=lambda n: torch.ones_like(n)))
        hls.save_patched(model, tmp_path / "y", merge=True)


def test_a_patch_saved_by_a_newer_version_is_announced(tmp_path):
    model, tok = hls.load()
    hls.patch(model, "logn")
    hls.save_patched(model, tmp_path / "p")
    data = json.loads((tmp_path / "p" / "logscale_config.json").read_text())
    assert data["hf_logscale_version"] == hls.__version__  # written, and read on load:
    data["hf_logscale_version"] = "99.0"
    (tmp_path / "p" / "logscale_config.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"saved by hf-logscale 99.0, newer than this"):
        hls.load(tmp_path / "p")
