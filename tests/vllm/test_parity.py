"""vLLM with the hf-logscale plugin equals transformers with the hf-logscale patch: prompt log-probabilities within
1e-4 for every scheme and for YaRN, linear and Llama 3 RoPE at 4 L and 8 L of the reference model; on tiny Llama,
Qwen2 and Mistral with windows, Qwen3, Mixtral, Qwen3-MoE, Ministral 3, Gemma 2 and 3, gpt-oss, Phi-3, Granite,
GLM-4, and OLMo 2 / OLMo 3 / GLM / SmolLM3 through vLLM's Transformers backend; on SmolLM2; greedy generation and
a mixed batch with chunked prefill and prefix caching; ``vllm serve``; lm-eval ``--model vllm``; a model without a
``logscale`` entry runs as plain vLLM.

Needs the CPU build of vLLM (``make test-vllm`` builds ``.venv-vllm`` and runs this folder with ``-m vllm``)."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import make_model

import hf_logscale as hls
from hf_logscale.data import sample_corpus
from hf_logscale.models import REFERENCE_MODEL

pytestmark = pytest.mark.vllm

# vLLM in-process (no engine subprocess: an engine starts in seconds), on CPU, 1 GiB of KV cache; contexts beyond a
# config's max_position_embeddings allowed (the patched models serve 8 L)
for _key, _value in {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1",
}.items():
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[2]
L = 256  # the reference model's training length
BOUND = 1e-4
# every registered scheme, with parameters that bite by 4 L, and the RoPE settings vLLM implements
VARIANTS = [
    "none",
    "logn",
    "critical:tau=2",
    "critical:tau=[0.5 1 1.5 2 2.5 3]",  # one τ per query head (the reference model has 6)
    "ssmax:tau=0.5",
    "llama4:a=0.5,F=64",
    "yarn-temp:f=4",
    "power:p=2",
    "yarn:factor=8+logn",
    "yarn:factor=8,attention_factor=1+critical:tau=0.5",
    "linear:factor=8+logn",
    "llama3:factor=8+logn",
]


def engine(model: Path | str, **kw):
    from vllm import LLM

    kw = {"dtype": "float32", "enforce_eager": True, "max_model_len": 8 * L, "seed": 0, **kw}
    return LLM(model=str(model), **kw)


def close(llm) -> None:
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


def served_logprobs(model: Path | str, prompts: list[list[int]], **kw) -> list[torch.Tensor]:
    """Prompt log-probabilities from a fresh engine for ``model``, shut down after."""
    llm = engine(model, **kw)
    try:
        return vllm_logprobs(llm, prompts)
    finally:
        close(llm)


def vllm_logprobs(llm, prompts: list[list[int]]) -> list[torch.Tensor]:
    """log p of each prompt token given the ones before it (positions 1 …), from vLLM."""
    from vllm import SamplingParams

    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], SamplingParams(max_tokens=1, prompt_logprobs=0))
    return [
        torch.tensor([o.prompt_logprobs[i][p[i]].logprob for i in range(1, len(p))], dtype=torch.float64)
        for o, p in zip(outs, prompts, strict=True)
    ]


@torch.no_grad()
def hf_logprobs(model, prompts: list[list[int]]) -> list[torch.Tensor]:
    out = []
    for p in prompts:
        logits = model(torch.tensor([p])).logits[0, :-1].double()
        out.append(torch.log_softmax(logits, -1).gather(-1, torch.tensor(p[1:])[:, None])[:, 0])
    return out


def assert_close(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        assert torch.isfinite(g).all(), "vLLM returned non-finite log-probabilities"
        worst = max(worst, (g - w).abs().max().item())
    assert worst <= BOUND, f"max |Δ log p| = {worst:.2e} > {BOUND}"
    print(f"max |Δ log p| = {worst:.2e}")  # pytest -s shows the measured values
    return worst


@pytest.fixture(scope="module")
def reference():
    model, tok = hls.load(dtype="float32")
    text = " ".join(d.text for d in sample_corpus("heldout"))
    ids = tok(text)["input_ids"]
    return model, tok, [ids[: 4 * L], ids[: 8 * L - 1]]  # 4 L and 8 L (the last position is 8 L − 1)


def saved(model, tok, variant: str, out: Path) -> Path:
    hls.patch(model, variant)
    try:
        hls.save_patched(model, out, tok, merge=True)
    finally:
        hls.unpatch(model)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_patched_folder_served_by_vllm_equals_transformers(reference, variant, tmp_path):
    model, tok, prompts = reference
    folder = saved(model, tok, variant, tmp_path / "patched")
    with hls.patched(model, variant):
        want = hf_logprobs(model, prompts)
    assert_close(served_logprobs(folder, prompts), want)


def test_a_plain_checkpoint_takes_a_variant_through_hf_overrides(reference):
    model, _, prompts = reference
    variant = "yarn:factor=8,attention_factor=1+logn"
    with hls.patched(model, variant):
        want = hf_logprobs(model, prompts)
    assert_close(served_logprobs(REFERENCE_MODEL, prompts, hf_overrides={"logscale": {"variant": variant}}), want)


def _moe(name: str):
    import transformers

    experts = {"num_local_experts": 4} if name == "mixtral" else {"num_experts": 4, "moe_intermediate_size": 64}
    cfg = getattr(transformers, {"mixtral": "MixtralConfig", "qwen3_moe": "Qwen3MoeConfig"}[name])(
        hidden_size=64,
        head_dim=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=128,
        num_experts_per_tok=2,
        vocab_size=256,
        initializer_range=0.2,
        **experts,
    )
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(cfg).float().eval()


@pytest.mark.parametrize("family", ["llama", "qwen2_sw24_all", "qwen3", "mistral_sw24", "mixtral", "qwen3_moe"])
def test_tiny_families_equal_transformers(family, tmp_path):
    if family in ("mixtral", "qwen3_moe"):
        model = _moe(family)
    elif family == "qwen2_sw24_all":  # Qwen2 takes its head size from hidden / heads; vLLM refuses a window on
        model = make_model("qwen2_sw24", num_attention_heads=2, num_key_value_heads=1, max_window_layers=0)  # some
    else:  # layers only. vLLM's CPU attention kernels take head sizes from 32 up, not 16
        model = make_model(family, head_dim=64)
    assert_tiny_served_as_patched(model, tmp_path / family)


def assert_tiny_served_as_patched(model, folder: Path, variant: str = "logn:train_len=16", **serve) -> None:
    """A tiny random model patched (logn, L = 16), saved merged and served: prompts of 64 and 200 tokens."""
    saved(model, None, variant, folder)
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(1, 256, (n,), generator=g).tolist() for n in (64, 200)]
    with hls.patched(model, variant):
        want = hf_logprobs(model, prompts)
    assert_close(served_logprobs(folder, prompts, skip_tokenizer_init=True, max_model_len=256, **serve), want)


def test_smollm2_equals_transformers(tmp_path):
    from hf_logscale.pretrained import named_model_path

    named_model_path("smollm2-135m")  # a clear error when it is not fetched
    model, tok = hls.load("smollm2-135m", dtype="float32")
    variant = "logn:train_len=64"
    folder = saved(model, tok, variant, tmp_path / "smol")
    text = " ".join(d.text for d in sample_corpus("heldout"))
    prompts = [tok(text)["input_ids"][:300]]
    with hls.patched(model, variant):
        want = hf_logprobs(model, prompts)
    del model
    gc.collect()
    assert_close(served_logprobs(folder, prompts, max_model_len=512), want)


def test_generation_and_a_mixed_batch_with_chunked_prefill_and_prefix_caching(reference, tmp_path):
    from vllm import SamplingParams

    model, tok, prompts = reference
    variant = "logn"
    folder = saved(model, tok, variant, tmp_path / "logn")
    shared = prompts[1][:L]
    batch = [shared + prompts[1][L : L + k] for k in (40, 300, 600, 900)]  # 296 … 1156 tokens, one prefix
    llm = engine(folder, enable_chunked_prefill=True, max_num_batched_tokens=128, enable_prefix_caching=True)
    try:
        llm.generate([{"prompt_token_ids": shared}], SamplingParams(max_tokens=1))  # the prefix is now cached
        greedy = SamplingParams(max_tokens=32, temperature=0.0, prompt_logprobs=0, ignore_eos=True)
        outs = llm.generate([{"prompt_token_ids": p} for p in batch], greedy)
    finally:
        close(llm)
    with hls.patched(model, variant):
        want = hf_logprobs(model, batch)
        for p, o in zip(batch, outs, strict=True):
            ref = model.generate(torch.tensor([p]), max_new_tokens=32, do_sample=False, min_new_tokens=32)
            assert list(o.outputs[0].token_ids) == ref[0, len(p) :].tolist(), f"greedy tokens differ at {len(p)}"
    got = [
        torch.tensor([o.prompt_logprobs[i][p[i]].logprob for i in range(1, len(p))], dtype=torch.float64)
        for o, p in zip(outs, batch, strict=True)
    ]
    assert_close(got, want)


def test_vllm_serve_completions_equal_offline(reference, tmp_path):
    model, tok, prompts = reference
    variant = "critical:tau=2"
    folder = saved(model, tok, variant, tmp_path / "served")
    with hls.patched(model, variant):
        want = hf_logprobs(model, prompts[:1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(folder), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--dtype", "float32", "--max-model-len", str(8 * L)]  # compiled: vLLM's default
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "vllm serve did not become healthy in 300 s"
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5)
                break
            except OSError:
                time.sleep(1)
        body = {"model": str(folder), "prompt": prompts[0], "max_tokens": 1, "echo": True, "logprobs": 0}
        request = urllib.request.Request(
            f"{url}/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        reply = json.load(urllib.request.urlopen(request, timeout=120))
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    got = reply["choices"][0]["logprobs"]["token_logprobs"][1 : len(prompts[0])]
    assert_close([torch.tensor(got, dtype=torch.float64)], want)


def test_lm_eval_with_vllm_runs_a_project_task(reference, tmp_path):
    model, tok, _ = reference
    folder = saved(model, tok, "logn", tmp_path / "lm")
    metadata = json.dumps({"max_seq_lengths": [L, 2 * L], "trials": 2, "depths": [0.5]})
    args = f"pretrained={folder},dtype=float32,enforce_eager=True,max_model_len={4 * L}"
    cmd = [sys.executable, "-m", "lm_eval", "--model", "vllm", "--model_args", args, "--tasks", "logscale_passkey"]
    cmd += ["--include_path", str(ROOT / "eval_tasks"), "--metadata", metadata, "--output_path", str(tmp_path / "o")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(next((tmp_path / "o").rglob("results_*.json")).read_text())["results"]["logscale_passkey"]
    assert 0.0 <= results["acc,none"] <= 1.0 and results[f"{L},none"] != -1


def test_a_model_without_a_logscale_entry_runs_as_plain_vllm(reference):
    _, _, prompts = reference
    within = [prompts[0][: L - 1]]
    ours = served_logprobs(REFERENCE_MODEL, within, max_model_len=L)[0]
    script = (
        "import json, sys; from vllm import LLM, SamplingParams\n"
        "p = json.loads(sys.argv[1])\n"
        f"llm = LLM(model={str(REFERENCE_MODEL)!r}, dtype='float32', enforce_eager=True, max_model_len={L}, seed=0)\n"
        "o = llm.generate([{'prompt_token_ids': p}], SamplingParams(max_tokens=1, prompt_logprobs=0))[0]\n"
        "print(json.dumps([o.prompt_logprobs[i][p[i]].logprob for i in range(1, len(p))]))\n"
    )
    env = {**os.environ, "VLLM_PLUGINS": ""}  # no plugin at all: vLLM as installed
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(within[0])], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    plain = torch.tensor(json.loads(done.stdout.strip().splitlines()[-1]), dtype=torch.float64)
    assert torch.equal(ours, plain)  # bit for bit: the plugin wraps nothing


def test_refused_settings_fail_before_serving():
    with pytest.raises(Exception, match="RoPE type 'dynamic' is refused"):
        engine(REFERENCE_MODEL, hf_overrides={"logscale": {"variant": "dynamic:factor=8+logn"}})
    with pytest.raises(Exception, match="RoPE table covers 2048 positions, max_model_len is 4096"):
        engine(REFERENCE_MODEL, max_model_len=16 * L, hf_overrides={"logscale": {"variant": "yarn:factor=8+logn"}})
    with pytest.raises(Exception, match="resolved to vLLM's TransformersForCausalLM .*serve it with --model-impl auto"):
        engine(REFERENCE_MODEL, model_impl="transformers", hf_overrides={"logscale": {"variant": "logn"}})


@pytest.mark.parametrize("variant", [None, "logn:train_len=16", "yarn:factor=16,attention_factor=1"])
def test_ministral3_own_scale_is_applied_and_a_scheme_replaces_it(variant, tmp_path):
    """vLLM serves Ministral 3 with its Mistral class and skips llama_4_scaling_beta for Hugging Face-format
    configs; the plugin applies it as transformers does, a scheme replaces it, a RoPE-only variant keeps it."""
    import transformers

    cfg = transformers.Ministral3Config(
        num_hidden_layers=2,
        hidden_size=64,
        head_dim=64,
        intermediate_size=128,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=256,
        initializer_range=0.2,
    )
    cfg.rope_parameters["original_max_position_embeddings"] = 32  # the native scale acts from position 32 on
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).float().eval()
    if variant is None:
        folder = tmp_path / "plain"
        model.save_pretrained(folder)
    else:
        folder = saved(model, None, variant, tmp_path / "patched")
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(1, 256, (200,), generator=g).tolist()]
    if variant is None:
        want = hf_logprobs(model, prompts)
    else:
        with hls.patched(model, variant):
            want = hf_logprobs(model, prompts)
    assert_close(served_logprobs(folder, prompts, skip_tokenizer_init=True, max_model_len=256), want)


_SMALL = dict(
    hidden_size=64,
    head_dim=64,  # vLLM's CPU attention kernels take head sizes from 32 up
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    intermediate_size=128,
    vocab_size=256,
    initializer_range=0.2,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
_PAIR = dict(layer_types=["sliding_attention", "full_attention"], sliding_window=24)
# vLLM's own classes for the families the transformers patch covers beyond Llama / Qwen / Mistral: soft-cap (Gemma
# 2, a cap the logits reach), per-layer-type RoPE (Gemma 3), sinks, MoE and its published YaRN (gpt-oss), fused qkv
# (Phi-3, 4K RoPE, one window for every layer as its 4K checkpoints have), attention / embedding / residual / logit
# multipliers (Granite), partial rotary (GLM-4, a quarter: not the default half); windows of 24
FAMILY_CONFIGS = {
    "gemma2": ("Gemma2Config", {**_SMALL, **_PAIR, "query_pre_attn_scalar": 64, "attn_logit_softcapping": 5.0}),
    "gemma3_text": ("Gemma3TextConfig", {**_SMALL, **_PAIR, "query_pre_attn_scalar": 64}),
    "gpt_oss": ("GptOssConfig", {**_SMALL, **_PAIR, "num_local_experts": 4, "num_experts_per_tok": 2}),  # YaRN ×32
    "phi3": ("Phi3Config", {**_SMALL, "hidden_size": 128, "head_dim": None, "sliding_window": 24}),
    "granite": (
        "GraniteConfig",
        {
            **_SMALL,
            "attention_multiplier": 0.1,
            "embedding_multiplier": 2.0,
            "residual_multiplier": 0.5,
            "logits_scaling": 4.0,
        },
    ),
    "glm4": ("Glm4Config", {**_SMALL, "partial_rotary_factor": 0.25}),
    # served by vLLM's Transformers backend (transformers' modeling code): OLMo 3's YaRN ×8 on its global layer
    # only, SmolLM3's NoPE layer (every 4th: 4 layers here)
    "olmo2": ("Olmo2Config", _SMALL),
    "olmo3": (
        "Olmo3Config",
        {
            **_SMALL,
            **_PAIR,
            "rope_parameters": {
                "rope_type": "yarn",
                "factor": 8.0,
                "original_max_position_embeddings": 32,
                "rope_theta": 500000.0,
            },
        },
    ),
    "glm": ("GlmConfig", {**_SMALL, "partial_rotary_factor": 0.25}),
    "smollm3": ("SmolLM3Config", {**_SMALL, "num_hidden_layers": 4}),
}


LOGN = "logn:train_len=16"


@pytest.mark.parametrize(
    ("family", "variant"),
    [(family, LOGN) for family in FAMILY_CONFIGS if family != "glm"]
    + [
        ("gpt_oss", "critical:tau=[0.5 2],train_len=16"),  # one τ per query head
        ("gpt_oss", "yarn:factor=64+logn:train_len=16"),  # a YaRN vLLM's gpt-oss class follows
        ("gemma3_text", "yarn:factor=16+logn:train_len=16"),  # merged into the global layers' RoPE only
        # per head, through the Transformers backend. One case per class served that way: vLLM decorates
        # transformers' model class in place when it serves it, and the class cannot then be built outside vLLM
        ("glm", "critical:tau=[0.5 2],train_len=16"),
    ],
)
def test_more_families_equal_transformers(family, variant, tmp_path):
    import transformers

    name, kwargs = FAMILY_CONFIGS[family]
    cfg = getattr(transformers, name)(**{k: v for k, v in kwargs.items() if v is not None})
    torch.manual_seed(0)
    attn = "eager" if family in ("gemma2", "gpt_oss") else "sdpa"  # transformers: no sdpa for soft-caps or sinks
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation=attn).float().eval()
    # OLMo 3 compiled, as vLLM serves by default: the Transformers backend's attention function runs in the graph
    serve = {"enforce_eager": False} if family == "olmo3" else {}
    assert_tiny_served_as_patched(model, tmp_path / family, variant, **serve)


def test_nope_layers_are_refused_when_selected(tmp_path):
    """vLLM's Granite class skips the rotary call on layers whose RoPE base is 0 (NoPE); the plugin scales queries
    inside that call, so a scheme on such a layer is refused rather than served unscaled. A scheme on the other
    layers only (``layers=``) is served."""
    import transformers

    cfg = transformers.GraniteConfig(**_SMALL)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(tmp_path / "granite")
    kw = dict(skip_tokenizer_init=True, max_model_len=256)
    nope = {"layer_rope_theta": [0.0, 10000.0]}
    with pytest.raises(Exception, match=r"model\.layers\.0\.self_attn applies no RoPE \(a NoPE layer\)"):
        engine(tmp_path / "granite", hf_overrides={**nope, "logscale": {"variant": LOGN}}, **kw)
    llm = engine(
        tmp_path / "granite",
        hf_overrides={**nope, "logscale": {"variant": {"scale": {"scheme": "logn", "train_len": 16, "layers": [1]}}}},
        **kw,
    )
    close(llm)


def test_a_logscale_entry_on_an_uncovered_architecture_is_refused(tmp_path):
    """Command R7B (vLLM's Cohere class): vLLM would serve it unscaled."""
    import transformers

    cfg = transformers.Cohere2Config(**_SMALL)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "cohere2")
    with pytest.raises(Exception, match="serves it with CohereForCausalLM, which the plugin does not cover"):
        engine(
            tmp_path / "cohere2",
            skip_tokenizer_init=True,
            max_model_len=256,
            hf_overrides={"logscale": {"variant": LOGN}},
        )
