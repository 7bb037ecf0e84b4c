"""The vLLM plugin's parts that need no vLLM: the s(n) tables against the float64 reference formulas, the
multiplication into the queries, the plan read from a config, and what it refuses. (tests/vllm/ serves models.)"""

import math
from types import SimpleNamespace

import pytest
import torch
import transformers
from reference import ref_scale
from test_patching import SCHEMES

import hf_logscale as hls
from hf_logscale.patching.families import NativeScale
from hf_logscale.serving.vllm_plugin import ScaledRotary, native_table, scale_table, serving_plan


@pytest.mark.parametrize("name", sorted(SCHEMES))
@pytest.mark.parametrize("window", [None, 24])
def test_tables_equal_the_reference_formulas_rounded_once(name, window):
    L = 16
    scheme = hls.LogScaleConfig(name, train_len=L, params=SCHEMES[name]).build(L)
    table = scale_table(scheme, 200, window)
    assert table.dtype == torch.float32
    ref = ref_scale(name, L, **SCHEMES[name])
    for p in range(200):
        n = min(p + 1, window) if window else p + 1
        assert table[p].item() == pytest.approx(ref(n), rel=6e-8, abs=1e-30), (name, p)


def test_ministral3_table_is_its_own_scale():
    config = transformers.LlamaConfig()
    config.rope_parameters = {
        "rope_type": "default",
        "llama_4_scaling_beta": 0.1,
        "original_max_position_embeddings": 8,
    }
    table = native_table(0.1, 8, 100)
    for p in range(100):
        assert table[p].item() == pytest.approx(NativeScale().factor(config, p + 1), rel=6e-8)
    assert table[7].item() == 1.0 and table[8].item() == pytest.approx(1 + 0.1 * math.log(2), rel=6e-8)


class _Identity(torch.nn.Module):
    def forward(self, positions, q, k):
        return q, k


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_queries_are_multiplied_in_float32_by_absolute_position(dtype):
    table = torch.linspace(1.0, 2.0, 64)
    rotary = ScaledRotary(_Identity(), table)
    positions = torch.tensor([0, 5, 63, 5])  # a mixed batch, flattened: tokens of several sequences
    q = torch.randn(4, 3 * 8, dtype=dtype)
    k = torch.randn(4, 8, dtype=dtype)
    q2, k2 = rotary(positions, q, k)
    assert q2.dtype == dtype and k2 is k
    assert torch.equal(q2, (q.float() * table[positions][:, None]).to(dtype))


def _config(**kw):
    config = transformers.LlamaConfig(max_position_embeddings=256, **kw)
    return config


def test_a_config_without_an_entry_is_left_alone():
    assert serving_plan(_config(), 2048) is None


def test_a_variant_from_overrides_sets_the_rope_and_a_long_enough_table():
    config = _config()
    config.logscale = {"variant": "yarn:factor=8,attention_factor=1+logn"}
    plan = serving_plan(config, 2048)
    assert (plan.train_len, plan.variant.scale.scheme_name) == (256, "logn")
    plan.prepare(config)
    assert config.rope_parameters["rope_type"] == "yarn" and config.rope_parameters["factor"] == 8
    assert config.max_position_embeddings == 2048  # YaRN ×8 over L = 256

    plain = _config()
    plain.logscale = {"variant": "logn"}
    serving_plan(plain, 4096).prepare(plain)
    assert plain.max_position_embeddings == 4096  # the default RoPE table must reach max_model_len


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("logn", r"the `logscale` config entry must be \{\"variant\""),
        ({"variant": "lgn"}, "unknown variant part 'lgn'. Did you mean logn"),
        ({"variant": "dynamic:factor=4+logn"}, "RoPE type 'dynamic' is refused"),
    ],
)
def test_refusals_name_the_reason(entry, message):
    config = _config()
    config.logscale = entry
    with pytest.raises(ValueError, match=message):
        serving_plan(config, 2048).prepare(config)


def test_an_unknown_training_length_is_asked_for():
    config = SimpleNamespace(model_type="llama", logscale={"variant": "logn"})  # states no length at all
    with pytest.raises(ValueError, match="give it in the variant"):
        serving_plan(config, 2048)


def test_per_head_tables_multiply_each_head_by_its_column():
    scheme = hls.LogScaleConfig("critical", train_len=16, tau=[0.5, 1.0, 2.0]).build()
    table = scale_table(scheme, 64, None)
    assert table.shape == (64, 3)
    for h, tau in enumerate((0.5, 1.0, 2.0)):
        want = scale_table(hls.LogScaleConfig("critical", train_len=16, tau=tau).build(), 64, None)
        assert torch.equal(table[:, h], want)
    rotary = ScaledRotary(_Identity(), table)
    positions = torch.tensor([0, 40, 63])
    q = torch.randn(3, 3 * 8, dtype=torch.bfloat16)
    q2, _ = rotary(positions, q, torch.zeros(3, 8))
    want = (q.float().view(3, 3, 8) * table[positions][..., None]).to(torch.bfloat16).view(3, 24)
    assert torch.equal(q2, want)


@pytest.mark.parametrize(
    ("rope", "kind"),
    [
        ({"full_attention": {"rope_type": "dynamic", "factor": 4.0}, "sliding_attention": {}}, "dynamic"),
        ({"rope_type": "longrope", "short_factor": [1.0], "long_factor": [2.0]}, "longrope"),  # Phi-3 128K
    ],
)
def test_a_refused_rope_type_is_found_in_the_checkpoints_own_parameters(rope, kind):
    """Also when the RoPE comes with the checkpoint (a 128K Phi-3) or sits in one layer type's parameters."""
    config = SimpleNamespace(
        model_type="llama", max_position_embeddings=256, rope_parameters=rope, logscale={"variant": "logn"}
    )
    with pytest.raises(ValueError, match=f"RoPE type '{kind}' is refused"):
        serving_plan(config, 1024).prepare(config)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("yarn:factor=64,attention_factor=1+logn", r"\('yarn', with attention_factor\) would be served unlike"),
        ("linear:factor=4+logn", r"\('linear'\) would be served unlike transformers"),
    ],
)
def test_gpt_oss_rope_that_vllm_would_drop_is_refused(variant, message):
    """vLLM's gpt-oss class builds YaRN from six keys of the config, whatever else it says: a RoPE variant it would
    not follow is refused; a YaRN variant within those keys, and the published RoPE, are served."""
    config = transformers.GptOssConfig(logscale={"variant": variant})
    with pytest.raises(ValueError, match=message):
        serving_plan(config, 8192).prepare(config)
    for ok in ("yarn:factor=64+logn", "logn"):
        config = transformers.GptOssConfig(logscale={"variant": ok})
        serving_plan(config, 8192).prepare(config)
        assert config.rope_parameters["rope_type"] == "yarn"
