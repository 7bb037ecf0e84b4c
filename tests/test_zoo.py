"""Published checkpoints' configs, without their weights.

``tests/data/configs/`` holds the config.json of 18 published checkpoints, values as published (sources in
``tests/data/configs/SOURCES.md``). Each is checked twice:

- at full size on the meta device (no weights, no memory): the resolved training length L, patch, describe, the
  verification plan, the per-layer windows and the RoPE merge for every RoPE kind, and an exact restore;
- as a shrunk copy (same rope parameters, layer types, windows, head_dim and GQA ratio; 3 layers, hidden 64):
  logits against the independent float64 forward, KV-cache generation against recomputation, left padding.
"""

import copy
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from conftest import ids
from reference import ref_scale, reference_logits
from transformers import AutoConfig, AutoModelForCausalLM

import hf_logscale as hls
from hf_logscale.patching.audit import TABLE_MULTIPLES, verify_plan
from hf_logscale.patching.families import FAMILIES
from hf_logscale.rope import ROPE_KINDS as ROPE_KINDS_SPEC
from hf_logscale.rope import rope_params
from hf_logscale.train_length import resolve_train_len

pytestmark = pytest.mark.core

CONFIGS = Path(__file__).parent / "data" / "configs"
VERSION = tuple(int(x) for x in transformers.__version__.split(".")[:2])

# hub id -> (L, family in the table or None, L from a folder whose name says nothing, guessed there?,
#            layers, sliding window on every layer or None)
EXPECTED = {
    "meta-llama/Llama-2-7b-hf": (4096, "Llama 2", 4096, True, 32, None),
    "meta-llama/Meta-Llama-3-8B": (8192, "Llama 3", 8192, False, 32, None),
    "meta-llama/Llama-3.1-8B": (131072, "Llama 3.1 / 3.2 / 3.3", 131072, False, 32, None),
    "meta-llama/Llama-3.2-1B": (131072, "Llama 3.1 / 3.2 / 3.3", 131072, False, 16, None),
    "meta-llama/Llama-3.3-70B-Instruct": (131072, "Llama 3.1 / 3.2 / 3.3", 131072, False, 80, None),
    "Qwen/Qwen2-7B": (32768, "Qwen2 / Qwen2.5 base (dense and MoE)", 32768, False, 28, None),
    "Qwen/Qwen2.5-7B": (32768, "Qwen2 / Qwen2.5 base (dense and MoE)", 32768, False, 28, None),
    "Qwen/Qwen2.5-7B-Instruct": (32768, "Qwen2.5 instruct", 32768, True, 28, None),
    "Qwen/Qwen2.5-7B-Instruct-1M": (262144, "Qwen2.5 1M", 262144, False, 28, None),
    "Qwen/Qwen2-57B-A14B": (32768, "Qwen2 / Qwen2.5 base (dense and MoE)", 32768, False, 28, None),
    "Qwen/Qwen3-8B": (32768, "Qwen3 (dense and MoE)", 32768, False, 36, None),
    "Qwen/Qwen3-30B-A3B": (32768, "Qwen3 (dense and MoE)", 32768, False, 48, None),
    "mistralai/Mistral-7B-v0.1": (8192, "Mistral 7B v0.1", 8192, False, 32, 4096),
    "mistralai/Mistral-7B-Instruct-v0.3": (32768, "Mistral 7B v0.2 / v0.3", 32768, True, 32, None),
    "mistralai/Mistral-Nemo-Base-2407": (128000, "Mistral NeMo", 128000, False, 40, None),
    "mistralai/Mixtral-8x7B-v0.1": (32768, "Mixtral 8x7B", 32768, True, 32, None),
    "mistralai/Ministral-8B-Instruct-2410": (32768, None, 32768, True, 36, 32768),
    "HuggingFaceTB/SmolLM3-3B": (65536, "SmolLM3", 65536, False, 36, None),
}
HUB_IDS = sorted(EXPECTED)
ROPE_KINDS = ["yarn", "dynamic", "linear", "llama3", "longrope"]


def test_the_zoo_is_complete():
    files = {p.stem.replace("--", "/", 1) for p in CONFIGS.glob("*.json")}
    assert files == set(EXPECTED)
    assert len({json.loads((CONFIGS / f"{h.replace('/', '--')}.json").read_text())["model_type"] for h in files}) >= 6


def raw(hub_id: str) -> dict:
    return json.loads((CONFIGS / f"{hub_id.replace('/', '--')}.json").read_text())


def config(hub_id: str, name: str | None = None, data: dict | None = None):
    """The config as ``from_pretrained(hub_id)`` builds it (``_name_or_path`` is the id), or from another
    folder name."""
    cfg = AutoConfig.for_model(**copy.deepcopy(data or raw(hub_id)))
    cfg._name_or_path = hub_id if name is None else name
    return cfg


def supported(hub_id: str) -> bool:
    return VERSION >= FAMILIES[raw(hub_id)["model_type"]].min_transformers


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_train_length_resolution(hub_id):
    L, family, local_L, guessed, *_ = EXPECTED[hub_id]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known checkpoint resolves without the guess warning
        if family is None:
            warnings.simplefilter("ignore")
        got = resolve_train_len(config(hub_id))
    assert got.value == L
    if family is None:
        assert got.guessed and got.source == "config max_position_embeddings, unverified"
    else:
        assert not got.guessed and got.source.startswith(f"known checkpoint: {family} — ")
    # the same config in a folder whose name says nothing
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        local = resolve_train_len(config(hub_id, name="/models/checkpoint-1234"))
    assert (local.value, local.guessed) == (local_L, guessed)
    assert [str(w.message).startswith(f"L = {local_L} is a guess") for w in seen] == ([True] if guessed else [])


_META: dict[str, torch.nn.Module] = {}


def meta_model(hub_id: str) -> torch.nn.Module:
    """The full-size model on the meta device (built once per test session)."""
    if hub_id not in _META:
        with torch.device("meta"):
            _META[hub_id] = AutoModelForCausalLM.from_config(config(hub_id))
    return _META[hub_id]


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_full_size_patch_describe_and_plan(hub_id):
    L, _, _, _, layers, window = EXPECTED[hub_id]
    if not supported(hub_id):
        model = meta_model(hub_id)
        with pytest.raises(ValueError, match="calls its attention through AttentionInterface from transformers 5"):
            hls.patch(model, "logn")
        return
    model = meta_model(hub_id)
    before = model.config.to_dict()
    hls.patch(model, "critical:tau=2")
    try:
        report = hls.describe(model)
        assert report.train_len == L and report.num_layers == layers
        assert report.patched_layers == list(range(layers))
        assert report.windows == {i: window for i in range(layers)}
        assert [r["n"] for r in report.rows] == [round(m * L) for m in TABLE_MULTIPLES]
        for row in report.rows:  # s(n) by hand: 1 + 2·ln(n/L)/ln L, at least 1, with n clipped to the window
            n = min(row["n"], window) if window else row["n"]
            s = ref_scale("critical", L, tau=2.0)(n)
            assert row["s" if window is None else f"s@window{window}"] == pytest.approx(s, rel=1e-12)
            assert row["effective"] == pytest.approx(s, rel=1e-12)  # no RoPE attention factor in these configs
        plan = verify_plan(model)
        assert plan.positions == [round(m * L) - 1 for m in TABLE_MULTIPLES]
        assert set(plan.expected) == set(range(layers))
        want = [ref_scale("critical", L, tau=2.0)(min(p + 1, window or p + 1)) for p in plan.positions]
        assert plan.expected[layers - 1] == pytest.approx(want, rel=1e-12)
    finally:
        hls.unpatch(model)
    assert model.config.to_dict() == before


@pytest.mark.parametrize("kind", ROPE_KINDS)
@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_full_size_rope_merge_for_every_kind(hub_id, kind):
    if not supported(hub_id):
        pytest.skip(f"{raw(hub_id)['model_type']} needs transformers ≥ 5 (refusal tested above)")
    L = EXPECTED[hub_id][0]
    model = meta_model(hub_id)
    before = model.config.to_dict()
    base = rope_params(model.config)
    head_dim = raw(hub_id).get("head_dim") or raw(hub_id)["hidden_size"] // raw(hub_id)["num_attention_heads"]
    params = {"factor": 4.0}
    if kind == "longrope":
        params.update(short_factor=[1.0] * (head_dim // 2), long_factor=[2.0] * (head_dim // 2))
    hls.patch(model, hls.Variant(rope=hls.RopeSetting(kind, params)))
    try:
        got = rope_params(model.config)
        assert got["rope_type"] == kind and got["factor"] == 4.0
        assert got["rope_theta"] == base["rope_theta"]  # merged, never dropped
        if kind in ("yarn", "llama3", "longrope"):
            assert got["original_max_position_embeddings"] == L and model.config.max_position_embeddings == 4 * L
        elif kind == "dynamic":
            assert model.config.max_position_embeddings == L  # transformers' dynamic NTK reads L from here
        if kind != base.get("rope_type"):  # another kind inherits nothing but theta
            assert set(got) <= {"rope_type", "rope_theta", "partial_rotary_factor", *ROPE_KINDS_SPEC[kind]}
        assert hls.describe(model).train_len == L
    finally:
        hls.unpatch(model)
    assert model.config.to_dict() == before


# ---- shrunk copies -------------------------------------------------------------------------------------------

L_SMALL = 16  # the scheme's L, so that 48 tokens cross it


def shrunk(hub_id: str, attn: str = "sdpa", **overrides) -> torch.nn.Module:
    """3 layers (4 for SmolLM3, to keep a NoPE layer), hidden 64, 4 experts; rope parameters, layer types,
    windows, head_dim and the GQA ratio as published."""
    data = raw(hub_id)
    heads = data["num_attention_heads"]
    kv = data.get("num_key_value_heads") or heads
    layers = 4 if "no_rope_layers" in data else 3
    data.update(
        num_hidden_layers=layers,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=heads // kv,
        num_key_value_heads=1,
        head_dim=data.get("head_dim") or data["hidden_size"] // heads,
        vocab_size=256,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    for key in ("layer_types", "no_rope_layers"):
        if key in data:
            data[key] = data[key][:layers]
    for key in ("num_experts", "num_local_experts"):
        if key in data:
            data.update({key: 4, "num_experts_per_tok": 2})
    for key in ("moe_intermediate_size", "shared_expert_intermediate_size"):
        if key in data:
            data[key] = 32
    data.pop("torch_dtype", None)
    data.update(overrides)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config(hub_id, data=data), attn_implementation=attn)
    model.generation_config.pad_token_id = 0
    return model.float().eval()


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


SCHEME = hls.LogScaleConfig("critical", train_len=L_SMALL, params={"tau": 2.0})
REF = ref_scale("critical", L_SMALL, tau=2.0)
# float32 against float64: measured 0.5e-6–3.6e-6 unpatched and 0.7e-6–1.3e-5 patched (head_dim 128 and the ×2.4
# logits of τ = 2 at n = 48 sharpen the softmax); counting n one key off moves the logits by 1.6e-2–2.3e-1.
BOUND = 3e-5


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("hub_id", HUB_IDS)
@torch.no_grad()
def test_shrunk_copy_matches_float64_reference(hub_id, attn):
    if not supported(hub_id):
        pytest.skip("family needs transformers ≥ 5")
    model = shrunk(hub_id, attn)
    x = ids()
    before = model(x).logits
    assert rel(before, reference_logits(model, x)) <= BOUND  # the reference reads this architecture right
    hls.patch(model, SCHEME)
    got = model(x).logits
    assert rel(got, reference_logits(model, x, REF)) <= BOUND
    assert rel(got, reference_logits(model, x, lambda n: REF(n + 1))) > 100 * BOUND  # the test can tell
    hls.unpatch(model)
    assert torch.equal(model(x).logits, before)


@pytest.mark.parametrize("hub_id", HUB_IDS)
@torch.no_grad()
def test_shrunk_copy_generation_and_left_padding(hub_id):
    if not supported(hub_id):
        pytest.skip("family needs transformers ≥ 5")
    model = hls.patch(shrunk(hub_id), SCHEME)
    prompt = ids(length=12)
    out = model.generate(prompt, max_new_tokens=20, do_sample=False, output_logits=True, return_dict_in_generate=True)
    full = model(out.sequences[:, :-1], use_cache=False).logits[:, 11:]
    assert (torch.stack(out.logits, 1) - full).abs().max() <= 1e-4
    rows = [ids(length=n, seed=n)[0] for n in (40, 27)]
    batch = torch.zeros(2, 40, dtype=torch.long)
    mask = torch.zeros(2, 40, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, 40 - len(r) :], mask[i, 40 - len(r) :] = r, 1
    logits = model(batch, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    want = reference_logits(model, batch, REF, padding_mask=mask)
    for i, r in enumerate(rows):
        assert (logits[i, -len(r) :] - model(r[None]).logits[0]).abs().max() <= 1e-5
        assert rel(logits[i, -len(r) :], want[i, -len(r) :]) <= BOUND


# ---- Ministral 3: an architecture with a length scale of its own -----------------------------------------------


def ministral3(anchor: int = 16384, **overrides) -> torch.nn.Module:
    """transformers' Ministral3Config defaults (YaRN ×16 over 16384, llama_4_scaling_beta 0.1; the published
    2512 checkpoints are multimodal configs around such a text config), shrunk; ``anchor`` moves the native
    scale's reference length so that it acts within a short test sequence."""
    cfg = transformers.Ministral3Config(
        num_hidden_layers=3,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=1,
        vocab_size=256,
        initializer_range=0.2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        **overrides,
    )
    cfg.rope_parameters["original_max_position_embeddings"] = anchor
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").float().eval()
    model.generation_config.pad_token_id = 0
    return model


needs_ministral3 = pytest.mark.skipif(VERSION < (5, 0), reason="ministral3 is in transformers 5")


@needs_ministral3
def test_ministral3_full_size_resolves_L_from_its_yarn_anchor():
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(transformers.Ministral3Config())
    hls.patch(model, "logn")
    report = hls.describe(model)
    assert report.train_len == 16384 and report.train_len_source.startswith("known checkpoint: Ministral 3")
    assert report.native_scale.startswith("1 + 0.1·ln(1 + ⌊pos / 16384⌋)") and report.native_replaced
    hls.unpatch(model)


@needs_ministral3
@torch.no_grad()
def test_ministral3_native_scale_is_replaced_never_stacked_and_restored(tmp_path):
    model = ministral3(anchor=16)  # native scale 1 + 0.1·ln(1 + ⌊pos/16⌋): 1, 1.069, 1.110 over 48 tokens
    x = ids()
    before = model(x).logits
    assert rel(before, reference_logits(model, x)) <= BOUND
    assert rel(before, reference_logits(model, x, native=False)) > 100 * BOUND  # the native scale is live

    # `none` leaves the model as shipped: native scale on, reported, counted in the effective multiplier
    hls.patch(model, "none:train_len=16")
    assert torch.equal(model(x).logits, before)
    report = hls.describe(model)
    assert not report.native_replaced and report.native_scale.startswith("1 + 0.1·ln(1 + ⌊pos / 16⌋)")
    for row in report.rows:
        native = 1 + 0.1 * math.log1p((row["n"] - 1) // 16)
        assert row["native"] == pytest.approx(native, rel=1e-12) and row["effective"] == pytest.approx(native)

    # a scheme replaces it: β = 0 while patched, logits = the reference with s(n) alone
    hls.patch(model, SCHEME)
    assert model.config.rope_parameters["llama_4_scaling_beta"] == 0.0
    got = model(x).logits
    assert rel(got, reference_logits(model, x, REF, native=False)) <= BOUND
    report = hls.describe(model)
    assert report.native_replaced and "native" not in report.rows[0]
    assert report.native_scale.startswith("1 + 0.1·ln(1 + ⌊pos / 16⌋)")  # what it replaced
    assert hls.verify(model).ok

    hls.unpatch(model)
    assert model.config.rope_parameters["llama_4_scaling_beta"] == 0.1
    assert torch.equal(model(x).logits, before)

    # a merged save holds β = 0 in its rope parameters and the base β in the patch entry; loading and
    # unpatching gives the model as shipped
    hls.patch(model, "yarn:factor=2+critical:tau=2,train_len=16")
    patched_logits = model(x).logits
    hls.save_patched(model, tmp_path / "merged", merge=True)
    loaded, _ = hls.load(tmp_path / "merged")
    assert torch.equal(loaded(x).logits, patched_logits)
    hls.unpatch(loaded)
    assert loaded.config.rope_parameters["llama_4_scaling_beta"] == 0.1
    assert torch.equal(loaded(x).logits, before)
