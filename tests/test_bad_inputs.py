"""Bad input, table-driven: every case over the CLI ends in exit code 2 with one `Error:` line naming the field,
no traceback and no files left behind; every case over the Python API raises ValueError naming the field.

Classes (from a hostile new user's session): exceptions that used to escape as tracebacks, nonsense that used to be
accepted, unclear messages, failures that came late, and files that had authority they should not have."""

import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_model
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

import hf_logscale as hls
from hf_logscale.cli import main
from hf_logscale.compare import run_compare
from hf_logscale.evaluation import EvalSpec
from hf_logscale.models import REFERENCE_MODEL
from hf_logscale.results import ResultStore
from hf_logscale.theory import phase_diagram, point, sweep_n
from hf_logscale.variants import Variant, load_recipe, parse_variant

RECIPES = {
    "empty.toml": "",
    "list-scheme.toml": 'scale = { scheme = ["logn"] }\n',
    "not-toml.toml": "scheme = = logn\n",
    "scale-string.toml": 'scale = "logn"\n',
    "rope-no-kind.toml": "[rope]\nfactor = 4.0\n",
    "unknown-field.toml": '[scale]\nscheme = "logn"\ncolour = "blue"\n',
    "bad-tau.toml": '[scale]\nscheme = "critical"\ntau = "high"\n',
    "layers-string.toml": '[scale]\nscheme = "logn"\nlayers = "0,1"\n',
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Folders and files the cases point at (built once)."""
    root = tmp_path_factory.mktemp("zoo")
    tok = AutoTokenizer.from_pretrained(REFERENCE_MODEL)
    tiny = root / "tiny"
    make_model("llama", vocab_size=len(tok), max_position_embeddings=128).save_pretrained(tiny)
    tok.save_pretrained(tiny)
    gpt2 = root / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tok))).save_pretrained(gpt2)
    tok.save_pretrained(gpt2)
    small_vocab = root / "small-vocab"
    make_model("llama", vocab_size=100, max_position_embeddings=128).save_pretrained(small_vocab)
    tok.save_pretrained(small_vocab)
    for name, size in (("empty-weights", 0), ("cut-weights", 1000)):
        shutil.copytree(tiny, root / name)
        with open(root / name / "model.safetensors", "r+b") as f:
            f.truncate(size)
    adapters = {
        "adapter-missing-base": {
            "base_model_name_or_path": str(root / "gone"),
            "variant": {"scale": {"scheme": "logn"}},
        },
        "adapter-variant-list": {"base_model_name_or_path": str(tiny), "variant": [1, 2]},
        "adapter-params-string": {
            "base_model_name_or_path": str(tiny),
            "variant": {"scale": {"scheme": "critical", "params": "tau=2"}},
        },
        "adapter-base-number": {"base_model_name_or_path": 5, "variant": {"scale": {"scheme": "logn"}}},
        "adapter-json-list": [1, 2],
        "adapter-unknown-scheme": {"base_model_name_or_path": str(tiny), "variant": {"scale": {"scheme": "logm"}}},
    }
    for name, data in adapters.items():
        (root / name).mkdir()
        (root / name / "logscale_config.json").write_text(json.dumps(data))
    (root / "adapter-not-json").mkdir()
    (root / "adapter-not-json" / "logscale_config.json").write_text("{base: ")
    (root / "a-file.bin").write_bytes(b"\0" * 10)
    (root / "empty.txt").write_text("")
    (root / "spaces.txt").write_text("   \n\n  ")
    (root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "data.csv").write_text("text\nhello\n")
    (root / "docs.jsonl").write_text(json.dumps({"body": "In the beginning."}) + "\n")
    for name, text in RECIPES.items():
        (root / name).write_text(text)
    _broken_models(root, tiny)
    os.mkfifo(root / "fifo.txt")
    (root / "not-a-model").mkdir()
    (root / "not-a-model" / "notes.txt").write_text("hello")
    (root / "per-layer-99.toml").write_text('[scale]\nscheme = "critical"\n[scale.per_layer.99]\ntau = 2.0\n')
    return root


def _broken_models(root: Path, tiny: Path) -> None:
    """Weights that are not the model their config describes, and configs with invalid RoPE settings."""
    from safetensors.torch import load_file, save_file

    def edit_weights(name, change):
        shutil.copytree(tiny, root / name)
        weights = load_file(root / name / "model.safetensors")
        change(weights)
        save_file(weights, root / name / "model.safetensors", metadata={"format": "pt"})

    def edit_config(name, change):
        shutil.copytree(tiny, root / name)
        config = json.loads((root / name / "config.json").read_text())
        change(config)
        (root / name / "config.json").write_text(json.dumps(config))

    edit_weights("missing-tensor", lambda w: w.pop("model.layers.0.mlp.up_proj.weight"))
    edit_weights("fewer-layers", lambda w: [w.pop(k) for k in list(w) if ".layers.1." in k])
    edit_weights("nan-weights", lambda w: w["model.layers.1.mlp.up_proj.weight"].fill_(math.nan))
    edit_weights("wrong-shape", lambda w: w.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(5, 5)}))
    edit_config("rope-unknown", lambda c: c["rope_parameters"].update(rope_type="bogus"))
    edit_config("rope-legacy-unknown", lambda c: (c.pop("rope_parameters"), c.update(rope_scaling={"type": "bogus"})))
    edit_config("yarn-no-factor", lambda c: c["rope_parameters"].update(rope_type="yarn"))


# (arguments, text the one Error line must contain); {zoo} is the fixture folder, {cwd} the case's empty folder
CLI_CASES = [
    # weights that are not the model (third round)
    ("patch --model {zoo}/missing-tensor --scheme logn", "its weights lack model.layers.0.mlp.up_proj.weight, which"),
    ("eval ppl --model {zoo}/fewer-layers --lengths 64", "weights lack model.layers.1.input_layernorm.weight (and 8"),
    ("eval ppl --model {zoo}/nan-weights --lengths 64", "weight model.layers.1.mlp.up_proj.weight holds NaN or inf"),
    ("patch --model {zoo}/wrong-shape --scheme logn", "up_proj.weight has shape [5, 5] but the config needs [128, 64]"),
    ("patch --model {zoo}/rope-unknown --scheme logn", "its config's RoPE settings are not valid (bogus)"),
    ("patch --model {zoo}/rope-legacy-unknown --scheme logn", "its config's RoPE settings are not valid"),
    ("patch --model {zoo}/yarn-no-factor --scheme logn", "'rope_type'='yarn': {'factor'}"),
    ("patch --model {zoo}/not-a-model --scheme logn", "the folder holds no config.json"),
    ("patch --model nosuchdir --scheme logn", "no such folder, and no hub copy of it is cached"),
    # numbers past what the formulas hold
    ("patch --scheme logn --train-len 99999999999999999999999", "`train_len` must be an integer ≥ 2 and ≤ 1e+12"),
    ("patch --variant logn:train_len=99999999999999999999999", "`train_len` must be an integer ≥ 2 and ≤ 1e+12"),
    ("patch --variant llama4:F=1e300", "`F` must be an integer ≥ 1 and ≤ 1e+12, got 1e+300"),
    ("patch --variant critical:tau=1e308", "`tau` must be a finite number ≥ 0 and ≤ 100, got 1e+308"),
    ("patch --scheme critical --tau 1e308", "`tau` must be a finite number ≥ 0 and ≤ 100, got 1e+308"),
    ("patch --variant power:p=1e308", "`p` must be a finite number ≥ -4 and ≤ 10, got 1e+308"),
    ("theory point --rho 0.5 --gamma 1 --n 99999999999999999999999", "`n` must be an integer ≥ 2 and ≤ 8192"),
    ("theory point --rho 0.5 --gamma 1 --n 1000000000", "`n` must be an integer ≥ 2 and ≤ 8192, got 1000000000"),
    ("theory point --rho 0.5 --gamma 1e308", "`gamma` must be a finite number ≥ 0 and ≤ 1000, got 1e+308"),
    ("eval passkey --lengths 256 --trials 99999999999999999999999", "`trials` must be an integer ≥ 1 and ≤ 10000"),
    ("patch --recipe {zoo}/per-layer-99.toml", "per_layer parameters name layer(s) 99, which do not exist"),
    ("eval ppl --variant '' --lengths 256", "empty variant"),
    # lm-eval model args and metadata
    (
        "lm-eval --tasks logscale_passkey --lengths 256 --model-args trust_remote_code=maybe",
        "model arg `trust_remote_code` must be true or false (also 1/0, yes/no), got 'maybe'",
    ),
    ("lm-eval --tasks logscale_passkey --lengths 256 --model-args max_length=-5", "`max_length` must be a positive"),
    ("lm-eval --tasks logscale_passkey --lengths 256 --model-args batch_size=abc", "`batch_size` must be a positive"),
    ("lm-eval --tasks logscale_passkey --model-args variant=logn", "give `variant` as --variant"),
    ("lm-eval --tasks logscale_passkey --model-args pretrained=x", "give `pretrained` as --model"),
    ("lm-eval --tasks logscale_passkey --lengths 256 --metadata '{\"trials\": 1e308}'", "`trials` must be an integer"),
    # paths
    ("eval ppl --lengths 256 --out ''", "--out must name a folder of its own"),
    ("eval ppl --lengths 256 --out /dev/null", "is inside a system folder (/proc, /sys, /dev)"),
    ("eval ppl --lengths 256 --out /proc/results", "is inside a system folder"),
    ("eval ppl --lengths 256 --out {zoo}/a-file.bin", "is a file; give a folder"),
    ("eval ppl --lengths 256 --out {zoo}/a-file.bin/results", "a-file.bin is a file, not a folder"),
    ("patch --scheme logn --out {zoo}/tiny", "holds other files (a model folder?)"),
    ("eval ppl --lengths 256 --dataset {zoo}/fifo.txt", "is not a regular file (a pipe, device or socket)"),
    # patch: schemes, parameters, variants, recipes
    ("patch --scheme nosuch", "unknown scheme 'nosuch'"),
    ("patch --scheme critical --tau -1", "`tau` must be a finite number ≥ 0 and ≤ 100, got -1"),
    ("patch --scheme critical --tau nan", "`tau` must be a finite number ≥ 0 and ≤ 100, got nan"),
    ("patch --scheme critical --tau inf", "`tau` must be a finite number ≥ 0 and ≤ 100, got inf"),
    ("patch --scheme logn --train-len 1", "`train_len` must be an integer ≥ 2 and ≤ 1e+12, got 1"),
    ("patch --scheme logn --train-len -7", "`train_len` must be an integer ≥ 2 and ≤ 1e+12, got -7"),
    ("patch --scheme none --train-len -7", "`train_len` must be an integer ≥ 2 and ≤ 1e+12, got -7"),
    ("patch --variant yarn:factor=0.5", "`factor` must be ≥ 1"),
    ("patch --variant yarn:factor=nan", "`factor` must be a number, got nan"),
    ("patch --variant yarn:factor=inf", "`factor` must be a number, got inf"),
    ("patch --variant logn+ssmax", "only one scheme part"),
    ("patch --variant yarn", "missing required parameter(s) factor"),
    ("patch --variant critical:tau", "expected key=value"),
    ("patch --variant llama4:F=0", "`F` must be an integer ≥ 1 and ≤ 1e+12"),
    ("patch --variant yarn-temp", "`f` must be a finite number ≥ 1 and ≤ 1e+06"),
    ("patch --variant power:p=-5", "`p` must be a finite number ≥ -4 and ≤ 10"),
    ("patch", "give exactly one of --scheme, --variant or --recipe"),
    ("patch --scheme logn --variant logn", "give exactly one of --scheme, --variant or --recipe"),
    ("patch --recipe nosuch", "unknown recipe 'nosuch'"),
    ("patch --recipe {zoo}/missing.toml", "recipe file '{zoo}/missing.toml' does not exist"),
    ("patch --recipe {zoo}/empty.toml", "the recipe sets nothing"),
    ("patch --recipe {zoo}/list-scheme.toml", "[scale].scheme: unknown scheme ['logn']"),
    ("patch --recipe {zoo}/not-toml.toml", "not valid TOML"),
    ("patch --recipe {zoo}/scale-string.toml", "`scale` must be a table"),
    ("patch --recipe {zoo}/rope-no-kind.toml", "[rope].kind is required"),
    ("patch --recipe {zoo}/unknown-field.toml", "[scale]: unknown field(s) colour"),
    ("patch --recipe {zoo}/bad-tau.toml", "`tau` must be a finite number ≥ 0 and ≤ 100, got 'high'"),
    ("patch --recipe {zoo}/layers-string.toml", "`layers` must be a non-empty list of layer indices"),
    ("patch --scheme logn --layers a,b", "--layers must be comma-separated layer indices"),
    ("patch --scheme logn --layers 99", "layer(s) 99 do not exist"),
    ("patch --scheme logn --merge", "--merge needs --out DIR"),
    ("patch --scheme logn --tau 1", "logn: unknown parameter 'tau'. Accepted: none"),
    ("patch --variant logn --tau 1", "--tau and --param go with --scheme"),
    ("patch --scheme logn --param x", "--param: expected key=value"),
    ("patch --scheme critical --param tau=abc", "is not a number or true/false"),
    ("patch --scheme critical --param taux=1", "unknown parameter 'taux'. Did you mean tau?"),
    # patch: models and files
    ("patch --model {zoo}/nonexistent --scheme logn", "no such file or folder"),
    ("patch --model {zoo}/a-file.bin --scheme logn", "it is a file; give the folder that holds config.json"),
    ("patch --model {zoo}/gpt2 --scheme logn", "unsupported architecture 'gpt2'"),
    ("patch --model {zoo}/empty-weights --scheme logn", "weights are corrupt or incomplete"),
    ("patch --model {zoo}/cut-weights --scheme logn", "weights are corrupt or incomplete"),
    ("patch --model {zoo}/adapter-missing-base --scheme logn", "its base model '{zoo}/gone'"),
    ("patch --model {zoo}/adapter-variant-list --scheme logn", "`variant` must be an object"),
    ("patch --model {zoo}/adapter-params-string --scheme logn", "`params` must be a mapping"),
    ("patch --model {zoo}/adapter-base-number --scheme logn", "`base_model_name_or_path` must be text"),
    ("patch --model {zoo}/adapter-json-list --scheme logn", "expected a JSON object"),
    ("patch --model {zoo}/adapter-not-json --scheme logn", "not valid JSON"),
    ("patch --model {zoo}/adapter-unknown-scheme --scheme logn", "unknown scheme 'logm'"),
    (
        "patch --model {zoo}/small-vocab --scheme logn",
        "the tokenizer has 4096 tokens but the model's embedding has 100",
    ),
    ("patch --scheme logn --device cuda", "asked for CUDA"),
    ("patch --scheme logn --device nosuch", "is not a device"),
    ("patch --scheme logn --dtype float8", "Invalid value for '--dtype'"),
    ("patch --scheme logn --attn nosuch", "attn_implementation"),
    ("patch --scheme logn --attn flash_attention_2", "--attn sdpa"),
    # eval
    ("eval ppl --lengths 0", "--lengths: '0' is not a whole number of tokens ≥ 2"),
    ("eval ppl --lengths abc", "--lengths: 'abc' is not a length"),
    ("eval ppl --lengths ,", "--lengths is empty"),
    ("eval ppl --max-documents 0", "`max_documents` must be an integer ≥ 1, got 0"),
    ("eval ppl --stride 5", "`stride` goes with mode sliding (--mode sliding)"),
    ("eval ppl --mode sliding --stride 0", "`stride` must be an integer ≥ 1, got 0"),
    ("eval ppl --mode sliding --stride 100000 --lengths 256", "`stride` must be in [1, 255]"),
    ("eval ppl --batch-size 0", "--batch-size must be a positive integer or auto"),
    ("eval ppl --batch-size x", "--batch-size must be a positive integer or auto"),
    ("eval ppl --dataset {zoo}/nonexistent.txt", "no such file or folder"),
    ("eval ppl --dataset {zoo}/empty.txt", "holds no text"),
    ("eval ppl --dataset {zoo}/spaces.txt", "holds no text"),
    ("eval ppl --dataset {zoo}/latin1.txt", "is not UTF-8 text"),
    ("eval ppl --dataset {zoo}/data.csv", "unsupported file type '.csv'"),
    ("eval ppl --dataset {zoo}/docs.jsonl --field nope", "has no field 'nope'"),
    ("eval ppl --dataset ''", "`dataset` must be a non-empty string"),
    ("eval ppl --lengths 100000", "is long enough for length 100000"),
    ("eval ppl --variant nosuch", "unknown variant part 'nosuch'"),
    ("eval ppl --out {zoo}/a-file.bin", "is a file; give a folder (it is created if missing)"),
    ("eval passkey --depths 1.5", "--depths must be comma-separated fractions in [0, 1]"),
    ("eval passkey --depths nan", "--depths must be comma-separated fractions in [0, 1]"),
    ("eval passkey --depths ,", "--depths must be comma-separated fractions in [0, 1]"),
    ("eval passkey --trials 0", "Invalid value for '--trials'"),
    ("eval passkey --lengths 16", "a passkey prompt needs at least"),
    ("eval needle --dataset {zoo}/empty.txt", "holds no text"),
    ("eval needle --lengths 10000000", "tokens of haystack"),
    # compare
    ("compare --tasks perplexity", "unknown task 'perplexity'"),
    ("compare --tasks ,", "--tasks is empty"),
    ("compare --variants ''", "--variants is empty"),
    ("compare --variants none,yarnn:factor=2", "unknown variant part 'yarnn'"),
    ("compare --variants logn,logn --lengths 256", "a variant is listed twice"),
    ("compare --model {zoo}/gpt2 --variants none,logn", "unsupported architecture 'gpt2'"),
    ("compare --stride 4", "`stride` goes with mode sliding (--mode sliding)"),
    ("compare --depths 2", "--depths must be comma-separated fractions in [0, 1]"),
    ("compare --max-documents 0", "`max_documents` must be an integer ≥ 1"),
    ("compare --lengths 1q", "--lengths: '1q' is not a length"),
    # lm-eval
    ("lm-eval", "--tasks is required"),
    ("lm-eval --tasks logscale_pasky", "unknown lm-eval task 'logscale_pasky'"),
    ("lm-eval --tasks logscale_ppl --metadata [1,2]", "--metadata must be a JSON object"),
    ("lm-eval --tasks logscale_ppl --metadata {bad", "--metadata must be a JSON object"),
    ("lm-eval --tasks logscale_ppl --model-args oops", "--model-args: expected key=value"),
    ("lm-eval --tasks logscale_ppl --variant logn:tau=2", "unknown parameter 'tau'"),
    ("lm-eval --tasks logscale_ppl --lengths abc", "--lengths: 'abc' is not a length"),
    # diagnose and calibrate
    ("diagnose --variants ''", "--variants is empty"),
    ("diagnose --windows 0", "Invalid value for '--windows'"),
    ("diagnose --lengths 1000000", "no document has the 1000000 tokens"),
    ("calibrate --out {cwd}/tau.txt", "--out must be a .toml recipe file"),
    ("heads --out {cwd}/heads.txt", "--out must be a .csv file"),
    ("heads --recipe {cwd}/r.txt", "--recipe must be a .toml file"),
    ("heads --rows 256", "--rows must be below L = 256, got 256"),
    ("heads --variant lgn", "unknown variant part 'lgn'"),
    ("calibrate --lengths 1x", "calibration needs lengths beyond the training length"),
    # theory
    ("theory point --rho 0.5 --gamma nan", "`gamma` must be a finite number ≥ 0 and ≤ 1000, got nan"),
    ("theory point --rho 0.5 --gamma inf", "`gamma` must be a finite number ≥ 0 and ≤ 1000, got inf"),
    ("theory point --rho 0.5 --gamma -1", "`gamma` must be a finite number ≥ 0 and ≤ 1000, got -1"),
    ("theory point --rho 1.5 --gamma 1", "`rho` must be a finite number > 0 and < 1, got 1.5"),
    ("theory point --rho 0.5 --gamma 1 --d 0", "`d` must be an integer ≥ 1 and ≤ 8192, got 0"),
    ("theory point --rho 0.5 --gamma 1 --alpha nan", "Invalid value for '--alpha'"),
    ("theory sweep-n --d 0", "`d` must be an integer ≥ 1 and ≤ 8192, got 0"),
    ("theory sweep-n --tokens simplex --d 4", "`d` must be ≥ n = 64 for simplex tokens"),
    ("theory sweep-n --ratio-grid -1,1", "`gamma` must be a finite number ≥ 0 and ≤ 1000, got -1"),
    ("theory sweep-n --ratio-grid nan,1", "`gamma` must be a finite number ≥ 0 and ≤ 1000, got nan"),
    ("theory sweep-n --n 1", "--n must be comma-separated integers ≥ 2"),
    ("theory sweep-n --rho 0", "`rho` must be a finite number > 0 and < 1, got 0"),
    ("theory phase-diagram --rho-grid 0,0.5", "`rho` must be a finite number > 0 and < 1, got 0"),
    ("theory phase-diagram --gamma-grid -1:2:3", "`gamma` must be a finite number ≥ 0 and ≤ 1000, got -1"),
    ("theory phase-diagram --rho-grid 0.1:0.5:1", "--rho-grid must be start:stop:count (2 ≤ count ≤ 10000)"),
    ("theory phase-diagram --rho-grid 0.1:0.5:100000000", "--rho-grid must be start:stop:count"),
    ("theory phase-diagram --tokens simplex --d 2 --n 8", "`d` must be ≥ n = 8 for simplex tokens"),
]


def run_cli(args: str, zoo: Path, cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    import shlex

    argv = [a.replace("{zoo}", str(zoo)).replace("{cwd}", str(cwd)) for a in shlex.split(args)]
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["hf-logscale", *argv])
    monkeypatch.delenv("HF_LOGSCALE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        main()
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


@pytest.mark.parametrize(("args", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(args, message, zoo, tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = sorted(p.name for p in zoo.iterdir())
    code, out, err = run_cli(args, zoo, cwd, monkeypatch, capsys)
    message = message.replace("{zoo}", str(zoo))
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 2, (code, out, err)
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err and "Traceback" not in out
    assert not any(cwd.iterdir()), sorted(p.name for p in cwd.iterdir())  # no results folder, figure or file
    assert sorted(p.name for p in zoo.iterdir()) == before


@pytest.fixture(scope="module")
def tiny_model(zoo):
    return hls.load(zoo / "tiny")


def nan_scheme(n):
    return torch.where(n > 20, torch.full_like(n, math.nan), torch.ones_like(n))


API_CASES = [
    (lambda z, m: hls.LogScaleConfig(scheme=5), "`scheme` must be a scheme name"),
    (lambda z, m: hls.LogScaleConfig("none", train_len=-7), "`train_len` must be an integer ≥ 2 and ≤ 1e+12, got -7"),
    (lambda z, m: hls.LogScaleConfig("logn", train_len=2.5), "`train_len` must be an integer ≥ 2 and ≤ 1e+12, got 2.5"),
    (lambda z, m: hls.LogScaleConfig("critical", tau=math.nan), "`tau` must be a finite number ≥ 0 and ≤ 100, got nan"),
    (lambda z, m: hls.LogScaleConfig("critical", taux=1), "unknown parameter 'taux'. Did you mean tau?"),
    (lambda z, m: hls.LogScaleConfig("critical", tau=1, params={"tau": 2}), "given both as keywords and in `params`"),
    (lambda z, m: hls.LogScaleConfig("logn", layers="0"), "`layers` must be a non-empty list"),
    (lambda z, m: hls.LogScaleConfig("logn", layers=[-1]), "`layers` must be a non-empty list"),
    (lambda z, m: hls.LogScaleConfig("logn", params=[1]), "`params` must be a mapping"),
    (lambda z, m: hls.scale_factors(hls.LogScaleConfig("logn", train_len=4), [math.nan]), "finite numbers ≥ 1"),
    (lambda z, m: hls.scale_factors(hls.LogScaleConfig("logn", train_len=4), [0]), "finite numbers ≥ 1"),
    (lambda z, m: hls.scale_factors(hls.LogScaleConfig("logn", train_len=4), "x"), "must be numbers ≥ 1"),
    (lambda z, m: parse_variant(5), "a variant is text"),
    (lambda z, m: parse_variant("yarn:factor=1e999"), "`factor` must be a number, got inf"),
    (lambda z, m: hls.patch(m[0], 5), "expected a Variant, LogScaleConfig or variant text"),
    (lambda z, m: Variant.from_dict([1]), "a variant must be a table"),
    (lambda z, m: Variant.from_dict({"scale": {"scheme": ["logn"]}}), "`scheme` must be a scheme name"),
    (lambda z, m: Variant.from_dict({"rope": {"kind": 4}}), "a RoPE setting must be a table with `kind`"),
    (lambda z, m: load_recipe(str(z / "empty.toml")), "the recipe sets nothing"),
    (lambda z, m: load_recipe(str(z)), "is a folder"),
    (lambda z, m: hls.load(123), "`model` must be a hub id (owner/name), a folder or a .gguf file, got 123"),
    (lambda z, m: hls.load(""), "`model` must be a hub id"),
    (lambda z, m: hls.load(z / "a-file.bin"), "it is a file"),
    (lambda z, m: hls.load(z / "tiny", dtype="float8"), "`dtype` must be one of"),
    (lambda z, m: EvalSpec(task="ppl", lengths=()), "`lengths` must be a non-empty list"),
    (lambda z, m: EvalSpec(task="ppl", lengths=(1,)), "`lengths` must be an integer ≥ 2 and ≤ 16777216, got 1"),
    (lambda z, m: EvalSpec(task="ppl", lengths=(2.5,)), "`lengths` must be an integer ≥ 2 and ≤ 16777216, got 2.5"),
    (lambda z, m: EvalSpec(task="passkey", lengths=(256,), depths=(1.5,)), "`depths` must be a finite number ≥ 0"),
    (
        lambda z, m: EvalSpec(task="passkey", lengths=(256,), trials=0),
        "`trials` must be an integer ≥ 1 and ≤ 10000, got 0",
    ),
    (lambda z, m: EvalSpec(task="passkey", lengths=(256,), trials=True), "`trials` must be an integer ≥ 1"),
    (lambda z, m: EvalSpec(task="ppl", lengths=(256,), stride=5), "`stride` goes with mode sliding"),
    (lambda z, m: EvalSpec(task="ppl", lengths=(256,), mode="rolling"), "`mode` must be one of truncate, sliding"),
    (lambda z, m: EvalSpec(task="ppl", lengths=(256,), max_documents=0), "`max_documents` must be an integer ≥ 1"),
    (lambda z, m: EvalSpec(task="pp", lengths=(256,)), "unknown task 'pp'. Did you mean ppl?"),
    (
        lambda z, m: run_compare(
            m[0], m[1], ["logn"], [EvalSpec(task="ppl", lengths=(64,))], ResultStore(z / "x"), model_name="t"
        ),
        "`variants` must be a non-empty list of Variants",
    ),
    (lambda z, m: point(rho=1.0, gamma=1.0, n=16), "`rho` must be a finite number > 0 and < 1, got 1.0"),
    (lambda z, m: point(rho=0.5, gamma=math.nan, n=16), "`gamma` must be a finite number ≥ 0 and ≤ 1000, got nan"),
    (lambda z, m: sweep_n([1], None, 0.5, [1.0]), "`n` must be an integer ≥ 2 and ≤ 8192, got 1"),
    (lambda z, m: phase_diagram(0, 16, [0.5], [1.0]), "`d` must be an integer ≥ 1 and ≤ 8192, got 0"),
    (lambda z, m: phase_diagram(2, 16, [0.5], [1.0], tokens="cube"), "`tokens` must be gaussian or simplex"),
]


@pytest.mark.parametrize(("call", "message"), API_CASES, ids=[f"api-{i}" for i in range(len(API_CASES))])
def test_api_bad_input(call, message, zoo, tiny_model):
    with pytest.raises(ValueError, match=_escape(message)):
        call(zoo, tiny_model)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_a_custom_scheme_that_gives_nan_fails_loudly(zoo):
    model, tok = hls.load(zoo / "tiny")
    hls.patch(model, hls.LogScaleConfig(scheme=nan_scheme))
    x = torch.randint(3, 4000, (1, 40), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="custom scheme gave s\\(n\\) = nan at n = 21; scales must be finite and > 0"):
        model(x)
    with pytest.raises(ValueError, match="custom scheme gave s\\(n\\) = nan"):
        hls.verify(model)  # verification probes n = L/2 … 16L and sees it too
    hls.unpatch(model)


def test_a_folder_with_weights_and_a_patch_file_uses_its_own_weights_and_says_so(zoo, tmp_path):
    folder = tmp_path / "both"
    shutil.copytree(zoo / "tiny", folder)
    other = {"base_model_name_or_path": "someone/else", "variant": {"scale": {"scheme": "logn"}}}
    (folder / "logscale_config.json").write_text(json.dumps(other))
    with pytest.warns(UserWarning, match="holds its own weights: they are loaded; the base named in its .* is not"):
        model, _ = hls.load(folder)
    assert model._hf_logscale_source["adapter_base_not_loaded"] == "someone/else"
    assert hls.patch_state(model).variant.text == "logn"  # the patch file's variant, on the folder's weights


def test_the_corpus_covers_every_class():
    assert len(CLI_CASES) + len(API_CASES) >= 80


# ---- valid inputs the third round found refused or mislabelled ---------------------------------------------------


@pytest.mark.parametrize(
    "variant", ["critical:tau=0", "yarn:factor=16,attention_factor=1+critical:tau=0", "critical:tau=-0.0", "none"]
)
def test_identity_variants_verify_as_identity(variant, zoo, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(f"patch --model {{zoo}}/tiny --variant {variant}", zoo, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert "✓ verified" in out and "an identity scale, logits unchanged" in out.replace("\n", " ")


def test_tokenizer_without_its_config_is_announced(zoo, tmp_path):
    folder = tmp_path / "no-tok-config"
    shutil.copytree(zoo / "tiny", folder)
    (folder / "tokenizer_config.json").unlink()
    with pytest.warns(UserWarning, match="tokenizer.json without tokenizer_config.json"):
        hls.load(folder)


def test_a_saved_patched_folder_with_weights_is_recorded_under_its_variant(zoo, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "merged"
    model, tok = hls.load(zoo / "tiny", variant="critical:tau=2,train_len=32")
    hls.save_patched(model, folder, tok, merge=True)
    (folder / "logscale_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(zoo / "tiny"), "variant": {"scale": {"scheme": "logn"}}})
    )
    (tmp_path / "cwd").mkdir()
    args = f"eval ppl --model {folder} --lengths 64 --out {tmp_path}/o"
    code, _, err = run_cli(args, zoo, tmp_path / "cwd", monkeypatch, capsys)
    assert code == 0, err
    records = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert {r["variant"] for r in records} == {"logn"}  # the patch file's variant, applied and recorded


def test_resuming_with_other_settings_keeps_rows_apart(zoo, tmp_path, monkeypatch, capsys):
    (tmp_path / "cwd").mkdir()
    for trials in (1, 2):
        args = f"eval passkey --model {{zoo}}/tiny --lengths 96 --depths 0.5 --trials {trials} --out {tmp_path}/o"
        code, _, err = run_cli(args, zoo, tmp_path / "cwd", monkeypatch, capsys)
        assert code == 0, err
    import csv

    rows = list(csv.DictReader((tmp_path / "o" / "summary.csv").open()))
    keys = [(r["variant"], r["length"], r["depth"], r["metric"], r["settings"]) for r in rows]
    assert len(keys) == len(set(keys)) == 8
    assert {json.loads(r["settings"])["trials"] for r in rows} == {1, 2}


def test_narrow_tables_never_cut_a_number(zoo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    from hf_logscale.cli import render

    monkeypatch.setattr(render.out, "_width", 80, raising=False)
    from hf_logscale.tables import Table

    table = Table("t", ["variant", "256"], text_columns=1)
    table.rows = [["yarn:attention_factor=1.0,factor=16.0+critical:tau=0.5", "39.28"]]
    render.print_table(table)
    shown = capsys.readouterr().out
    assert "factor=16.0" in shown and "factor=1\n" not in shown.replace("│", "").replace(" ", "")


def test_describe_prints_as_text(tiny_model):
    model, _ = tiny_model
    with hls.patched(model, "critical:tau=2,train_len=32"):
        text = str(hls.describe(model))
    assert text.startswith("architecture") and "train length L   32" in text and "s(n)" not in text.split("\n")[0]


@pytest.mark.parametrize(
    "args, what",
    [
        ("patch --model owner/some-model --scheme logn", "model 'owner/some-model'"),
        ("eval ppl --lengths 256 --dataset pg19", "dataset 'pg19'"),
    ],
)
def test_no_network_fails_at_once_with_the_fix(args, what, zoo, tmp_path, monkeypatch, capsys):
    """Online mode with the hub unreachable (a loopback port nothing listens on): one line, no retries."""
    import time

    from huggingface_hub import constants

    from hf_logscale import hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    hub._reachable.cache_clear()
    t0 = time.monotonic()
    code, _, err = run_cli(args, zoo, tmp_path, monkeypatch, capsys)
    assert code == 2 and f"no network: {what} needs 127.0.0.1" in err and "set HF_HUB_OFFLINE=1" in err
    assert "Retrying" not in err and time.monotonic() - t0 < 30
