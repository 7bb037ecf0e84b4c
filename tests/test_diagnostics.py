"""Diagnostics: blockwise entropy against eager attention weights, linear memory, collapse metrics and gradient norms
against direct computations, and calibration recovering a known τ."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_model

import hf_logscale as hls
from hf_logscale.diagnostics import (
    attention_entropy,
    band_entropy,
    calibrate,
    collapse,
    effective_rank,
    gradient_norms,
    mean_pairwise_cosine,
)
from hf_logscale.diagnostics import entropy as entropy_mod


def eager_entropy(model, x, variant):
    """Entropy of the attention weights an eager forward returns (output_attentions)."""
    with hls.patched(model, variant):
        att = model(x, output_attentions=True).attentions  # per layer [B, H, T, T]
    return torch.stack([-(a * a.clamp_min(1e-30).log()).sum(-1).mean(0) for a in att])


@pytest.mark.parametrize("family", ["llama", "qwen3", "mistral_sw24", "qwen2_sw24"])
@pytest.mark.parametrize("variant", ["none", "logn:train_len=8", "critical:tau=3,train_len=8"])
def test_blockwise_entropy_equals_eager_attention_weights(family, variant, monkeypatch):
    monkeypatch.setattr(entropy_mod, "BLOCK_ELEMENTS", 4 * 60 * 7)  # several query blocks
    model = make_model(family, attn="eager", dtype=torch.float64)  # float64: p·log p is exact enough to compare
    x = torch.randint(1, 256, (2, 60), generator=torch.Generator().manual_seed(0))
    ours = attention_entropy(model, x, variant)
    assert ours.shape == (2, model.config.num_attention_heads, 60)
    assert torch.allclose(ours, eager_entropy(model, x, variant), atol=1e-5)
    assert not hls.is_patched(model)


def test_entropy_is_backend_independent():
    x = torch.randint(1, 256, (1, 50), generator=torch.Generator().manual_seed(1))
    a = attention_entropy(make_model("qwen2", attn="eager", dtype=torch.float64), x, "logn:train_len=8")
    b = attention_entropy(make_model("qwen2", attn="sdpa", dtype=torch.float64), x, "logn:train_len=8")
    assert torch.allclose(a, b, atol=1e-9)


PEAK = """
import sys, torch
from hf_logscale.diagnostics import entropy
entropy.BLOCK_ELEMENTS = 2**20
def rss(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":")) * 1024
t = int(sys.argv[1])
q, k = torch.randn(1, 4, t, 16), torch.randn(1, 2, t, 16)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the high-water mark (imports peak higher than what follows)
before = rss("VmRSS")
entropy.row_entropy(q, k, 0.25)
print(rss("VmHWM") - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory read from /proc (Linux)")
def test_entropy_memory_grows_linearly():
    """Peak extra memory (fresh process, resident-set high-water mark) of the entropy pass at 4k and 8k keys:
    full attention scores would grow ×4 (256 MiB → 1 GiB); the blocked computation stays well under that (×2 plus
    allocator noise: measured ×2.0–2.2)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    peaks = [
        int(
            subprocess.run(
                [sys.executable, "-c", PEAK, str(t)], capture_output=True, text=True, env=env, check=True
            ).stdout
        )
        for t in (4096, 8192)
    ]
    full = 4 * 4096 * 4096 * 4  # the [1, 4, 4k, 4k] float32 scores a direct computation would hold
    assert peaks[0] < full / 2 and peaks[1] < 3 * peaks[0], peaks


def test_collapse_metrics_equal_direct_computations():
    h = torch.randn(50, 16, generator=torch.Generator().manual_seed(2)) + 0.5
    u = h.double() / h.double().norm(dim=-1, keepdim=True)
    cos = u @ u.T
    assert mean_pairwise_cosine(h) == pytest.approx(float(cos[~torch.eye(50, dtype=torch.bool)].mean()), rel=1e-12)
    s = torch.linalg.svdvals(h.double())
    p = s / s.sum()
    assert effective_rank(h) == pytest.approx(math.exp(float(-(p * p.log()).sum())), rel=1e-12)
    assert effective_rank(torch.ones(10, 4)) == pytest.approx(1.0)
    model = make_model("llama")
    x = torch.randint(1, 256, (1, 40), generator=torch.Generator().manual_seed(3))
    stats = collapse(model, x)
    hidden = model(x, output_hidden_states=True).hidden_states
    assert len(stats["cosine"]) == model.config.num_hidden_layers
    assert stats["cosine"][1] == pytest.approx(mean_pairwise_cosine(hidden[1][0, 1:]))


def test_gradient_norms_equal_autograd_through_hooks():
    model = make_model("qwen2")
    x = torch.randint(1, 256, (1, 40), generator=torch.Generator().manual_seed(4))
    ours = gradient_norms(model, x)
    seen = []

    def keep(module, args, kwargs):
        h = kwargs.get("hidden_states", args[0] if args else None)
        h.retain_grad()
        seen.append(h)

    hooks = [layer.register_forward_pre_hook(keep, with_kwargs=True) for layer in model.model.layers]
    model(x, labels=x).loss.backward()
    for hook in hooks:
        hook.remove()
    model.zero_grad()
    assert ours == pytest.approx([float(h.grad.norm()) for h in seen], rel=1e-6)


def test_calibration_recovers_a_known_tau():
    """Target built from the model itself under critical:tau=2.5: the fit must find τ ≈ 2.5."""
    model = make_model("llama", max_position_embeddings=16)
    windows = [torch.randint(1, 256, (1, 128), generator=torch.Generator().manual_seed(s)) for s in (5, 6)]
    known = torch.stack([attention_entropy(model, w, "critical:tau=2.5") for w in windows]).mean(0)
    target = band_entropy(known, 128)
    fit = calibrate(model, windows, [128], 16, target=target)
    assert fit.tau == pytest.approx(2.5, abs=0.01) and fit.rms < 1e-3
    assert fit.unscaled[128] > fit.fitted[128]  # scaling lowered the entropy to the target
    with pytest.raises(ValueError, match="beyond the training length"):
        calibrate(model, windows, [16], 16)


def test_calibrated_recipe_loads_and_applies(tmp_path):
    model = make_model("llama", max_position_embeddings=16)
    windows = [torch.randint(1, 256, (1, 64), generator=torch.Generator().manual_seed(7))]
    fit = calibrate(model, windows, [32, 64], 16, iterations=8)
    path = tmp_path / "cal.toml"
    path.write_text(fit.recipe(16, "test"))
    v = hls.load_recipe(str(path))
    assert v.scale.scheme_name == "critical" and v.scale.params["tau"] == pytest.approx(fit.tau, abs=1e-4)
    hls.patch(model, hls.parse_variant(f"@{path}"))
    state = hls.patch_state(model)
    assert hls.describe(model).variant == "@cal" and state.scheme.tau == pytest.approx(fit.tau, abs=1e-4)


def test_nll_calibration_reports_the_curve_and_finds_its_minimum():
    model = make_model("llama", max_position_embeddings=16)
    windows = [torch.randint(1, 256, (1, 64), generator=torch.Generator().manual_seed(s)) for s in (8, 9)]
    fit = calibrate(model, windows, [32, 64], 16, objective="nll", iterations=6)
    taus = [t for t, _ in fit.curve]
    assert taus == sorted(taus) and {0.0, 0.5, 1.0, 2.0, 8.0} <= set(taus)  # the grid, then the refinement
    assert fit.value == min(v for _, v in fit.curve) and (fit.tau, fit.value) in fit.curve
    # the objective is the NLL, recomputed here directly at the fitted τ
    v = hls.Variant(scale=hls.LogScaleConfig("critical", train_len=16, tau=fit.tau))
    with hls.patched(model, v), torch.no_grad():
        direct = [
            torch.nn.functional.cross_entropy(model(w[:, :n]).logits[0, :-1], w[0, 1:n]).item()
            for n in (32, 64)
            for w in windows
        ]
    assert fit.value == pytest.approx(sum(direct) / len(direct), rel=1e-5)


def test_calibrate_per_layer_recipe_runs_in_compare(tmp_path, cli):
    """calibrate → recipe with per-layer τ → compare, through the CLI."""
    from transformers import AutoTokenizer

    from hf_logscale.models import REFERENCE_MODEL

    tok = AutoTokenizer.from_pretrained(REFERENCE_MODEL)
    folder = tmp_path / "tiny"
    make_model("llama", vocab_size=len(tok), max_position_embeddings=32).save_pretrained(folder)
    tok.save_pretrained(folder)
    recipe = tmp_path / "cal.toml"

    code, cap = cli(
        "calibrate",
        "--model",
        str(folder),
        "--objective",
        "nll",
        "--per-layer",
        "--lengths",
        "64,128",
        "--windows",
        "1",
        "--out",
        str(recipe),
    )
    assert code == 0, cap.err
    assert "the objective over τ (nll)" in cap.out and "τ fitted per layer" in cap.out
    v = hls.load_recipe(str(recipe))
    assert v.scale.scheme_name == "critical" and set(v.scale.layer_params) == {0, 1}
    code, cap = cli(
        "compare",
        "--model",
        str(folder),
        "--variants",
        f"none,logn,@{recipe}",
        "--tasks",
        "ppl",
        "--lengths",
        "128",
        "--max-documents",
        "2",
        "--out",
        str(tmp_path / "cmp"),
    )
    assert code == 0, cap.err
    records = [json.loads(x) for x in (tmp_path / "cmp" / "results.jsonl").read_text().splitlines()]
    assert {r["variant"] for r in records} == {"none", "logn", "@cal"}
    assert "`@cal`" in (tmp_path / "cmp" / "report.md").read_text()


@pytest.mark.parametrize("family", ["llama", "mistral_sw24"])
def test_head_gaps_equal_a_float64_reference(family):
    """G, Δ and the top weight of the last rows, from the independent float64 forward's attention logits."""
    from hf_logscale.diagnostics import head_gaps

    model = make_model(family, dtype=torch.float64)
    _gaps_match_reference(model, head_gaps)


def test_head_gaps_read_gemma2_soft_capped_logits_and_refuse_sinks():
    """The gaps of the logits the model uses: Gemma 2's, after its soft-cap (a cap of 5 that the logits reach);
    gpt-oss's sinks join the softmax, which the law does not model: refused with the reason."""
    from test_zoo import shrunk

    from hf_logscale.diagnostics import head_gaps

    _gaps_match_reference(shrunk("google/gemma-2-2b-it", "eager", attn_logit_softcapping=5.0).double(), head_gaps)
    with pytest.raises(ValueError, match="attention sinks .* does not model a sink"):
        head_gaps(shrunk("openai/gpt-oss-20b", "eager"), torch.randint(1, 256, (1, 40)), rows=4)


def _gaps_match_reference(model, head_gaps):
    from reference import reference_logits

    x = torch.randint(1, 256, (2, 40), generator=torch.Generator().manual_seed(4))
    rows = 6
    got = head_gaps(model, x, rows=rows)
    logits: dict[int, torch.Tensor] = {}
    reference_logits(model, x, attention=logits)
    for layer, z in logits.items():
        for head in range(z.shape[1]):
            g, d, p, o = [], [], [], []
            for b in range(x.shape[0]):
                for row in range(40 - rows, 40):
                    vals = [v for v in z[b, head, row].tolist() if v != -math.inf]
                    top = max(vals)
                    rest = list(vals)
                    rest.remove(top)
                    m = max(rest)
                    weights = [math.exp(v - m) for v in rest]
                    g.append(top - sum(w * v for w, v in zip(weights, rest, strict=True)) / sum(weights))
                    d.append(top - (m + math.log(sum(weights) / len(rest))))
                    p.append(1.0 / (1.0 + sum(math.exp(v - top) for v in rest)))
                    o.append(math.log(p[-1] / (1.0 - p[-1])))
            for name, values in (("G", g), ("delta", d), ("p_top", p), ("logodds", o)):
                want = torch.tensor(values, dtype=torch.float64).median().item()
                have = getattr(got, name)[layer, head].item()
                assert have == pytest.approx(want, rel=1e-5, abs=1e-9), (layer, head, name)  # fp32 RoPE tables
    assert got.tau_c(16)[0, 0].item() == pytest.approx(math.log(16) / got.G[0, 0].item())


def test_heads_command_writes_a_row_per_layer_and_head(tmp_path, cli):
    out, recipe = tmp_path / "heads.csv", tmp_path / "zero-shot.toml"
    code, cap = cli("heads", "--windows", "2", "--rows", "8", "--out", str(out), "--recipe", str(recipe))
    assert code == 0, cap.err
    assert "τ_c = ln L / G" in cap.out
    model, _ = hls.load()
    hls.patch(model, hls.load_recipe(str(recipe)))  # every head its own τ_c, no length beyond L seen
    taus = [float(line.split(",")[6]) for line in out.read_text().splitlines()[1:]]
    got = [t for layer in range(4) for t in hls.patch_state(model).layer_schemes[layer].tau]
    assert got == pytest.approx(taus, abs=5e-5) and hls.verify(model).ok
    code, cap = cli("describe", "--variant", f"@{recipe}")
    assert code == 0 and "tau=[" in cap.out, cap.err
    lines = out.read_text().splitlines()
    assert lines[0] == "layer,head,G,delta,p_top,logodds,tau_c"
    assert len(lines) == 1 + 4 * 6  # the reference model: 4 layers × 6 heads
    for line in lines[1:]:
        g, tau = float(line.split(",")[2]), float(line.split(",")[6])
        assert g > 0 and tau == pytest.approx(math.log(256) / g, rel=1e-5)


def test_head_gaps_label_the_layers_they_observed():
    """A model patched on some layers only is observed on those: rows are labelled by the model's layer index."""
    from hf_logscale.diagnostics import head_gaps, heads_csv

    model, _ = hls.load()
    hls.patch(model, "logn", layers=[1, 3])
    gaps = head_gaps(model, torch.randint(5, 4000, (1, 64), generator=torch.Generator().manual_seed(0)), rows=4)
    assert gaps.layers == (1, 3) and gaps.G.shape[0] == 2
    assert {line.split(",")[0] for line in heads_csv(gaps, 256).splitlines()[1:]} == {"1", "3"}
