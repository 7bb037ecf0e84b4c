"""Scheme formulas against hand-computed values and Qwen-7B's own table rule; properties; validation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ref_scale

import hf_logscale as hls
from hf_logscale.schemes import SCHEMES

pytestmark = pytest.mark.core

# name -> (params, L, {n: hand-computed s(n)})
HAND = {
    "none": ({}, None, {1: 1.0, 10**6: 1.0}),
    "logn": ({}, 4096, {1: 1.0, 4096: 1.0, 8192: 13 / 12, 65536: 16 / 12}),
    "critical": ({"tau": 0.5}, 4096, {100: 1.0, 4096: 1.0, 8192: 1 + 0.5 / 12, 16777216: 1 + 0.5 * 12 / 12}),
    "ssmax": ({}, 256, {1: 0.0, 16: 0.5, 256: 1.0, 65536: 2.0}),
    "ssmax:tau=0.5": ({"tau": 0.5}, 256, {1: 0.0, 16: 0.5, 256: 1.0, 65536: 1.5}),  # the slope beyond L only
    "llama4": ({}, None, {1: 1.0, 8191: 1.0, 8192: 1 + 0.1 * math.log(2), 3 * 8192 + 5: 1 + 0.1 * math.log(4)}),
    "yarn-temp": ({"f": 4.0}, None, {1: (0.1 * math.log(4) + 1) ** 2, 10**5: (0.1 * math.log(4) + 1) ** 2}),
    "power": ({"p": 2.0}, 16, {8: 1.0, 16: 1.0, 256: 4.0, 4096: 9.0}),
}


def test_every_scheme_has_hand_values():
    assert {k.split(":")[0] for k in HAND} == set(SCHEMES)


@pytest.mark.parametrize("name", list(HAND))
def test_formula_hand_values(name):
    params, L, table = HAND[name]
    cfg = hls.LogScaleConfig(scheme=name.split(":")[0], train_len=L, params=params)
    n = torch.tensor(list(table), dtype=torch.float64)
    got = hls.scale_factors(cfg, n)
    want = torch.tensor(list(table.values()), dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)


@pytest.mark.parametrize("L", [2048, 4096, 8192])
def test_logn_is_qwen7b_table_bit_for_bit(L):
    # modeling_qwen.py: logn_list = [math.log(i, seq_length) if i > seq_length else 1 for i in range(1, 32768)]
    qwen = torch.tensor([math.log(i, L) if i > L else 1 for i in range(1, 32768)])  # float32, as Qwen stores it
    ours = hls.scale_factors(hls.LogScaleConfig("logn", train_len=L), torch.arange(1, 32768)).to(torch.float32)
    assert torch.equal(ours, qwen)


def test_critical_tau1_equals_logn():
    n = torch.arange(1, 100000, dtype=torch.float64)
    a = hls.scale_factors(hls.LogScaleConfig("critical", train_len=4096), n)
    b = hls.scale_factors(hls.LogScaleConfig("logn", train_len=4096), n)
    torch.testing.assert_close(a, b, rtol=1e-15, atol=0)


_n = st.integers(min_value=1, max_value=10**7)
_L = st.integers(min_value=2, max_value=10**6)


@settings(max_examples=200, deadline=None)
@given(n1=_n, n2=_n, L=_L, tau=st.floats(0, 10), p=st.floats(0, 4), a=st.floats(0, 2), F=st.integers(1, 10**5))
def test_monotone_in_n(n1, n2, L, tau, p, a, F):
    lo, hi = sorted((n1, n2))
    for cfg in (
        hls.LogScaleConfig("logn", train_len=L),
        hls.LogScaleConfig("critical", train_len=L, params={"tau": tau}),
        hls.LogScaleConfig("ssmax", train_len=L),
        hls.LogScaleConfig("power", train_len=L, params={"p": p}),
        hls.LogScaleConfig("llama4", params={"a": a, "F": F}),
    ):
        s = hls.scale_factors(cfg, [lo, hi])
        assert s[0] <= s[1] * (1 + 1e-15), cfg


@settings(max_examples=200, deadline=None)
@given(n=_n, L=_L, tau=st.floats(0, 10), p=st.floats(0, 4))
def test_clip_at_train_len(n, L, tau, p):
    for cfg, ref in (
        (hls.LogScaleConfig("logn", train_len=L), ref_scale("logn", L)),
        (hls.LogScaleConfig("critical", train_len=L, params={"tau": tau}), ref_scale("critical", L, tau=tau)),
        (hls.LogScaleConfig("power", train_len=L, params={"p": p}), ref_scale("power", L, p=p)),
    ):
        s = hls.scale_factors(cfg, [n]).item()
        if n <= L:
            assert s == 1.0
        else:
            assert s >= 1.0
        assert s == pytest.approx(ref(n), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(n=_n, L=_L, p=st.floats(-4, 0, exclude_max=True))
def test_power_below_one_beyond_train_len(n, L, p):
    """A negative exponent: 1 up to L, then below 1 and falling, never reaching 0."""
    s = hls.scale_factors(hls.LogScaleConfig("power", train_len=L, params={"p": p}), [n]).item()
    if n <= L:
        assert s == 1.0
    else:
        assert 0.0 < s <= 1.0
    assert s == pytest.approx(ref_scale("power", L, p=p)(n), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scheme="logn", train_len=1), r"`train_len` must be an integer ≥ 2 and ≤ 1e\+12, got 1"),
        (
            dict(scheme="critical", train_len=64, params={"tau": -1}),
            r"`tau` must be a finite number ≥ 0 and ≤ 100, got -1",
        ),
        (dict(scheme="yarn-temp"), r"`f` must be a finite number ≥ 1 and ≤ 1e\+06, got None \(required"),
        (dict(scheme="yarn-temp", params={"f": 0.5}), r"`f` must be a finite number ≥ 1 and ≤ 1e\+06"),
        (dict(scheme="power", params={"p": -5}), r"`p` must be a finite number ≥ -4 and ≤ 10"),
        (dict(scheme="llama4", params={"F": 0}), r"`F` must be an integer ≥ 1"),
        (dict(scheme="llama4", params={"a": float("nan")}), r"`a` must be a finite number ≥ 0 and ≤ 100"),
        (dict(scheme="critcal"), r"unknown scheme 'critcal'. Did you mean critical\?"),
        (dict(scheme="critical", params={"tua": 1}), r"unknown parameter 'tua'. Did you mean tau\?"),
        (dict(scheme="logn", layers=[0, -1]), r"`layers` must be a non-empty list"),
    ],
)
def test_validation_errors_name_field_and_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hls.LogScaleConfig(**kwargs)


def test_scale_factors_needs_train_len_and_valid_n():
    with pytest.raises(ValueError, match="`train_len` \\(L\\) is unknown"):
        hls.scale_factors(hls.LogScaleConfig("logn"), [1, 2])
    with pytest.raises(ValueError, match="must be finite numbers ≥ 1"):
        hls.scale_factors(hls.LogScaleConfig("logn", train_len=8), [0, 2])


def test_custom_callable():
    cfg = hls.LogScaleConfig(scheme=lambda n: 1 + 0.5 * torch.log(n))
    torch.testing.assert_close(hls.scale_factors(cfg, [1.0, math.e]), torch.tensor([1.0, 1.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="cannot be serialised"):
        cfg.to_dict()
    bad = hls.LogScaleConfig(scheme=lambda n: 1.0)
    with pytest.raises(ValueError, match="must return a tensor shaped like n"):
        hls.scale_factors(bad, [1.0, 2.0])
