"""Published checkpoints' configs, without their weights.

``tests/data/configs/`` holds the config.json of 29 published checkpoints: 25 copies of the published file, 4
assembled from published values (sources for each in ``tests/data/configs/SOURCES.md``). Each is checked twice:

- at full size on the meta device (no weights, no memory): the resolved training length L, patch, describe, the
  verification plan, the per-layer windows and the RoPE merge for every RoPE kind, and an exact restore;
- as a shrunk copy (same rope parameters, layer types, windows, head_dim and GQA ratio; 3 layers, or as many as
  keep a NoPE or global layer: 4 for SmolLM3, Command R7B and OLMo 3, 6 for Gemma 3; hidden 64; an image-text
  model's language model shrunk the same way):
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
from standin_flash import register
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
#            layers, sliding window: on every layer, None, or (W, k): every layer but each k-th slides)
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
    "google/gemma-3-1b-it": (32768, "Gemma 3 1B", 32768, False, 26, (512, 6)),
    "google/gemma-3-4b-it": (131072, "Gemma 3 4B / 12B / 27B", 131072, False, 34, (1024, 6)),  # image-text model
    "openai/gpt-oss-20b": (131072, "gpt-oss", 131072, False, 24, (128, 2)),
    "google/gemma-2-2b-it": (8192, "Gemma 2", 8192, False, 26, (4096, 2)),
    "microsoft/Phi-4-mini-instruct": (131072, "Phi-3 / Phi-3.5 / Phi-4-mini 128K", 131072, False, 32, 262144),
    "allenai/OLMo-2-1124-7B-Instruct": (4096, "OLMo 2", 4096, False, 32, None),
    "ibm-granite/granite-3.3-8b-instruct": (131072, "Granite 3.1 and later", 131072, False, 40, None),
    # assembled from published values, not byte copies (SOURCES.md says which source gave each value)
    "CohereLabs/c4ai-command-r7b-12-2024": (131072, "Command R7B", 132096, True, 32, (4096, 4)),
    "allenai/Olmo-3-7B-Think": (65536, "OLMo 3", 65536, False, 32, (4096, 4)),
    "zai-org/glm-4-9b-chat-hf": (131072, "GLM-4-9B chat", 131072, False, 40, None),
    "zai-org/GLM-4-9B-0414": (32768, None, 32768, True, 40, None),
}


# what describe says each family does to its logits besides s(n) (one line per fact)
OWN_LOGITS = {
    "google/gemma-3-1b-it": ["scaling 1/√256 (query_pre_attn_scalar"],
    "google/gemma-3-4b-it": ["scaling 1/√256 (query_pre_attn_scalar"],
    "google/gemma-2-2b-it": [
        "scaling 1/√256 (query_pre_attn_scalar",
        "soft-capped, 50·tanh(x / 50); s(n) multiplies x before",
    ],
    "openai/gpt-oss-20b": [
        "sink logit per head joins every row's softmax; s(n) scales the token logits, never the sink"
    ],
    "ibm-granite/granite-3.3-8b-instruct": ["scaling = attention_multiplier 0.0078125 (replaces 1/√head_dim)"],
    "CohereLabs/c4ai-command-r7b-12-2024": ["global (full-attention) layers apply no RoPE (NoPE)"],
}


def windows(spec, layers: int) -> dict[int, int | None]:
    """Each layer's window from the published pattern: (W, k) slides every layer but each k-th (Gemma 2 and
    gpt-oss alternate, Gemma 3 has 5 sliding : 1 global)."""
    if isinstance(spec, tuple):
        w, k = spec
        return {i: None if (i + 1) % k == 0 else w for i in range(layers)}
    return {i: spec for i in range(layers)}


def own_factor(data: dict) -> float:
    """The RoPE attention factor the published config implies (logits scale by its square): YaRN 0.1·ln f + 1,
    LongRoPE √(1 + ln f / ln L0) with f = max_position_embeddings / L0 (Peng et al. 2023; Phi-3 report)."""
    rope = data.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type"))
    if kind == "yarn":
        return 0.1 * math.log(rope["factor"]) + 1.0
    if kind == "longrope":
        orig = rope.get("original_max_position_embeddings") or data["original_max_position_embeddings"]
        return math.sqrt(1 + math.log(data["max_position_embeddings"] / orig) / math.log(orig))
    return 1.0


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
    data = raw(hub_id)
    model_type = data.get("text_config", data)["model_type"]  # an image-text model: its language model's
    return VERSION >= FAMILIES[model_type].min_transformers


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
            _META[hub_id] = AutoModelForCausalLM.from_config(config(hub_id), attn_implementation=_attn(hub_id))
    return _META[hub_id]


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_full_size_patch_describe_and_plan(hub_id):
    L, _, _, _, layers, window = EXPECTED[hub_id]
    if not supported(hub_id):
        model = meta_model(hub_id)
        with pytest.raises(
            ValueError, match="calls its attention through AttentionInterface, with position_ids, from transformers 5"
        ):
            hls.patch(model, "logn")
        return
    model = meta_model(hub_id)
    before = model.config.to_dict()
    af = own_factor(raw(hub_id))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        hls.patch(model, "critical:tau=2")
    # a RoPE that already scales the logits is announced, never stacked on in silence
    said = [str(w.message) for w in seen if "RoPE already multiplies" in str(w.message)]
    assert said == ([said[0]] if af != 1.0 else []) and all(f"by {af**2:.4f} (the" in m for m in said)
    try:
        report = hls.describe(model)
        assert report.train_len == L and report.num_layers == layers
        assert report.patched_layers == list(range(layers))
        assert report.windows == windows(window, layers)
        assert report.rope_attention_factor == pytest.approx(af, rel=1e-12)
        notes = OWN_LOGITS.get(hub_id, [])
        assert len(report.logit_notes) == len(notes)
        assert all(n in r for n, r in zip(notes, report.logit_notes, strict=True))
        assert [r["n"] for r in report.rows] == [round(m * L) for m in TABLE_MULTIPLES]
        for row in report.rows:  # s(n) by hand: 1 + 2·ln(n/L)/ln L, at least 1, with n clipped to the window
            for w in set(report.windows.values()):
                n = min(row["n"], w) if w else row["n"]
                s = ref_scale("critical", L, tau=2.0)(n)
                assert row["s" if w is None else f"s@window{w}"] == pytest.approx(s, rel=1e-12)
            widest = max(v for k, v in row.items() if k.startswith("s"))
            assert row["effective"] == pytest.approx(af**2 * widest, rel=1e-12)
        plan = verify_plan(model)
        assert plan.positions == [round(m * L) - 1 for m in TABLE_MULTIPLES]
        assert set(plan.expected) == set(range(layers))
        last = windows(window, layers)[layers - 1]
        want = [ref_scale("critical", L, tau=2.0)(min(p + 1, last or p + 1)) for p in plan.positions]
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
    text = model.config.get_text_config()  # Gemma 3 4B: the image-text model's language model
    before = model.config.to_dict()
    base = rope_params(text)
    raw_before = copy.deepcopy(getattr(text, "rope_parameters", None))
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    partial = base.get("partial_rotary_factor") or getattr(text, "partial_rotary_factor", None) or 1.0
    rotary = int(head_dim * partial) // 2  # Phi-4-mini rotates 3/4
    params = {"factor": 4.0}
    if kind == "longrope":
        params.update(short_factor=[1.0] * rotary, long_factor=[2.0] * rotary)
    if text.model_type == "phi3" and kind != "longrope" and VERSION >= (5, 0):  # 5.x's Phi3Config: LongRoPE alone
        with pytest.raises(ValueError, match=r"transformers rejected the RoPE setting .* one of \['longrope'\]"):
            hls.patch(model, hls.Variant(rope=hls.RopeSetting(kind, params)))
        assert model.config.to_dict() == before
        return
    hls.patch(model, hls.Variant(rope=hls.RopeSetting(kind, params)))
    try:
        got = rope_params(text)
        assert got["rope_type"] == kind and got["factor"] == 4.0
        assert got["rope_theta"] == base["rope_theta"]  # merged, never dropped
        if kind in ("yarn", "llama3", "longrope"):
            assert got["original_max_position_embeddings"] == L and text.max_position_embeddings == 4 * L
        elif kind == "dynamic":
            assert text.max_position_embeddings == L  # transformers' dynamic NTK reads L from here
        if kind != base.get("rope_type"):  # another kind inherits nothing but theta
            assert set(got) <= {"rope_type", "rope_theta", "partial_rotary_factor", *ROPE_KINDS_SPEC[kind]}
        if "sliding_attention" in (raw_before or {}):  # per layer type: the sliding layers keep their local RoPE
            assert text.rope_parameters["sliding_attention"] == raw_before["sliding_attention"]
        assert hls.describe(model).train_len == L
    finally:
        hls.unpatch(model)
    assert model.config.to_dict() == before


# ---- shrunk copies -------------------------------------------------------------------------------------------

L_SMALL = 16  # the scheme's L, so that 48 tokens cross it


VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28)


def _attn(hub_id: str, attn: str = "sdpa") -> str:
    """eager instead of sdpa where the family has none: gpt-oss (sinks), Gemma 2 (soft-cap; transformers 5 refuses
    sdpa for it, 4.x runs it without the cap, which the patch refuses)."""
    cls = transformers.AutoModelForCausalLM._model_mapping[type(config(hub_id))]
    capped = raw(hub_id).get("attn_logit_softcapping") is not None
    return "eager" if attn == "sdpa" and (capped or not cls._supports_sdpa) else attn


def shrunk(hub_id: str, attn: str = "sdpa", **overrides) -> torch.nn.Module:
    """3 layers, or as many as keep a NoPE layer (SmolLM3: 4) and a global layer (Command R7B and OLMo 3: 4,
    Gemma 3: 6), hidden 64 (Phi-3: heads × head_dim, which its config checks LongRoPE against), 4 experts; rope
    parameters, layer types, windows, head_dim and the GQA ratio as published. An image-text model: its language
    model shrunk, a one-layer vision tower. Families without sdpa get eager."""
    published = raw(hub_id)
    data = published.get("text_config", published)
    defaults = AutoConfig.for_model(**copy.deepcopy(published)).get_text_config()  # Gemma 3's sparse text_config
    heads = data.get("num_attention_heads") or defaults.num_attention_heads
    kv = data.get("num_key_value_heads") or defaults.num_key_value_heads or heads
    types = getattr(defaults, "layer_types", None) or []  # Cohere2 derives them from sliding_window_pattern
    first_global = next((i for i, t in enumerate(types) if t == "full_attention"), 0)
    layers = max(4 if "no_rope_layers" in data else 3, first_global + 1)
    head_dim = data.get("head_dim") or getattr(defaults, "head_dim", None) or data["hidden_size"] // heads
    data.update(
        num_hidden_layers=layers,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=heads // kv,
        num_key_value_heads=1,
        head_dim=head_dim,
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
    if data.get("model_type") == "phi3":
        # its config checks LongRoPE's lists against hidden / heads; the initialiser shrinks with the width so that
        # the logits stay as sharp as in the 64-wide copies (at 0.2, float32 noise reached 8e-4 on a 40-token row)
        data.update(
            hidden_size=heads // kv * head_dim, initializer_range=0.2 * math.sqrt(64 / (heads // kv * head_dim))
        )
    for key in ("torch_dtype", "quantization_config"):  # gpt-oss's mxfp4 needs kernels and a GPU
        data.pop(key, None)
        published.pop(key, None)
    data.update(overrides)
    if "text_config" in published:
        published.update(vision_config={**published["vision_config"], **VISION}, mm_tokens_per_image=4)
    cfg = config(hub_id, data=published)
    attn = _attn(hub_id, attn)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
    model.generation_config.pad_token_id = 0
    return model.float().eval()


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


SCHEME = hls.LogScaleConfig("critical", train_len=L_SMALL, params={"tau": 2.0})
REF = ref_scale("critical", L_SMALL, tau=2.0)
# float32 against float64: measured 0.5e-6–3.6e-6 unpatched and 0.7e-6–1.3e-5 patched (head_dim 128 and the ×2.4
# logits of τ = 2 at n = 48 sharpen the softmax); counting n one key off moves the logits by 1.6e-2–2.3e-1.
BOUND = 3e-5
# Counting n one key off moves the logits by 30 × the bound or more; least on Granite (1.4e-3 at bound 3e-5), whose
# attention_multiplier 1/128 keeps the logits small.
TELLS = 30


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
    assert rel(got, reference_logits(model, x, lambda n: REF(n + 1))) > TELLS * BOUND  # the test can tell
    hls.unpatch(model)
    assert torch.equal(model(x).logits, before)


@torch.no_grad()
def test_gemma2_under_flex_attention():
    """Gemma 2 runs eager, flex or flash: under flex the soft-cap is transformers' score modification, applied to
    logits of the scaled query; a cap the logits reach (5) so that s acts inside it. Flex compiles on first use
    (about 10 s on CPU). gpt-oss's sinks under flex are refused on CPU by transformers itself (GPU only)."""
    model = shrunk("google/gemma-2-2b-it", "flex_attention", attn_logit_softcapping=5.0)
    x = ids()
    before = model(x).logits
    assert rel(before, reference_logits(model, x)) <= BOUND
    hls.patch(model, SCHEME)
    assert model.config._attn_implementation == "logscale_flex_attention"
    got = model(x).logits
    assert rel(got, reference_logits(model, x, REF)) <= BOUND
    assert rel(got, reference_logits(model, x, lambda n: REF(n + 1))) > TELLS * BOUND
    hls.unpatch(model)
    assert torch.equal(model(x).logits, before)


@pytest.mark.parametrize(
    ("hub_id", "kernel"),
    [("google/gemma-2-2b-it", "flash_attention_2"), ("openai/gpt-oss-20b", "kernels-community/vllm-flash-attn3")],
)
@torch.no_grad()
def test_softcap_and_sinks_under_a_flash_kernel(hub_id, kernel, monkeypatch):
    """Gemma 2's soft-cap and gpt-oss's sinks reach a flash kernel as keywords (``softcap``, ``s_aux``; the
    kernel named is the one each model card loads): the query is scaled before the kernel caps the logits, and the
    sink logit is never scaled. A CPU stand-in kernel computes what the real one does; a cap the logits reach (5)
    so that s acts inside it."""
    if not supported(hub_id):
        pytest.skip("family needs transformers ≥ 5")
    flash = register(monkeypatch, kernel)
    model = shrunk(hub_id, "eager", **({"attn_logit_softcapping": 5.0} if "gemma" in hub_id else {}))
    model.config._attn_implementation = kernel  # what loading with the real kernel on a GPU gives
    x = ids()
    before = model(x).logits
    assert set(flash.looked_up) == {kernel}
    assert rel(before, reference_logits(model, x)) <= BOUND  # the stand-in computes the architecture
    hls.patch(model, SCHEME)
    flash.looked_up.clear()
    got = model(x).logits
    assert set(flash.looked_up) == {kernel}  # looked up by its own name, not the wrapper's
    assert rel(got, reference_logits(model, x, REF)) <= BOUND
    assert rel(got, reference_logits(model, x, lambda n: REF(n + 1))) > TELLS * BOUND
    prompt = ids(length=12)
    out = model.generate(prompt, max_new_tokens=12, do_sample=False, output_logits=True, return_dict_in_generate=True)
    full = model(out.sequences[:, :-1], use_cache=False).logits[:, 11:]
    assert rel(torch.stack(out.logits, 1), full) <= BOUND
    hls.unpatch(model)
    assert model.config._attn_implementation == kernel
    assert torch.equal(model(x).logits, before)


def test_gemma2_under_sdpa_is_refused_where_transformers_would_drop_its_cap():
    """transformers 4.x runs Gemma 2 under sdpa without the attention soft-cap (5.x refuses to load it so): the
    patch refuses such a model rather than scale one that is not the trained model."""
    model = shrunk("google/gemma-2-2b-it", "eager")
    model.config._attn_implementation = "sdpa"  # what a 4.x load with attn_implementation="sdpa" gives
    with pytest.raises(ValueError, match="under sdpa runs without its attention soft-cap.*attn_implementation='eager'"):
        hls.patch(model, SCHEME)
    assert not hls.is_patched(model)


@pytest.mark.parametrize("hub_id", HUB_IDS)
@torch.no_grad()
def test_shrunk_copy_generation_and_left_padding(hub_id):
    if not supported(hub_id):
        pytest.skip("family needs transformers ≥ 5")
    model = hls.patch(shrunk(hub_id), SCHEME)
    prompt = ids(length=12)
    out = model.generate(prompt, max_new_tokens=20, do_sample=False, output_logits=True, return_dict_in_generate=True)
    full = model(out.sequences[:, :-1], use_cache=False).logits[:, 11:]
    assert rel(torch.stack(out.logits, 1), full) <= BOUND
    rows = [ids(length=n, seed=n)[0] for n in (40, 27)]
    batch = torch.zeros(2, 40, dtype=torch.long)
    mask = torch.zeros(2, 40, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, 40 - len(r) :], mask[i, 40 - len(r) :] = r, 1
    logits = model(batch, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    want = reference_logits(model, batch, REF, padding_mask=mask)
    for i, r in enumerate(rows):
        assert rel(logits[i, -len(r) :], model(r[None]).logits[0]) <= BOUND
        assert rel(logits[i, -len(r) :], want[i, -len(r) :]) <= BOUND


@pytest.mark.skipif(
    VERSION >= (5, 0), reason="transformers 5 passes position_ids: Command R7B is patched (tiny matrix)"
)
def test_cohere2_is_refused_before_transformers_5():
    """transformers 4.57's Cohere2 attention receives no position_ids: n could not follow left padding."""
    cfg = transformers.Cohere2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=256
    )
    model = AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(ValueError, match="cohere2 calls its attention through AttentionInterface, with position_ids"):
        hls.patch(model, SCHEME)


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
