"""The paper's model: the simulator against the exact finite-n closed form, the n → ∞ limits and rates, the analytic
JVP against finite differences and the full Jacobian, and the CLI."""

import csv
import math

import pytest
import torch

from hf_logscale.theory import (
    eta,
    eta_exact,
    gamma_c,
    gaussian_tokens,
    jvp,
    layer,
    limits,
    metrics,
    phase_diagram,
    simplex_exact,
    simplex_tokens,
    sweep_n,
)


def test_simplex_tokens_are_exact():
    t = simplex_tokens(50, 0.3, q=2.0, d=60)
    g = t.x @ t.x.T
    assert torch.allclose(g.diagonal(), torch.full((50,), 2.0, dtype=torch.float64), atol=1e-12)
    off = g[~torch.eye(50, dtype=torch.bool)] / 2.0
    assert torch.allclose(off, torch.full_like(off, 0.3), atol=1e-12) and t.d == 60
    assert t.mean_cosine == pytest.approx(0.3, abs=1e-12)


def test_gaussian_tokens_are_almost_simplex():
    t = gaussian_tokens(400, 512, 0.4, seed=3)
    assert t.mean_cosine == pytest.approx(0.4, abs=0.03)
    assert (t.x.norm(dim=-1) ** 2).mean() == pytest.approx(1.0, abs=0.03)
    assert torch.equal(t.x, gaussian_tokens(400, 512, 0.4, seed=3).x)


@pytest.mark.parametrize(
    "n,rho,gamma,alpha",
    [
        (64, 0.5, 1.0, 0.0),
        (64, 0.5, 2.0, 0.0),
        (200, 0.3, 4.0, 0.0),
        (128, 0.8, 3.0, 0.5),
        (96, 0.2, 1.25, 2.0),
        (300, 0.6, 2.5, 1.0),
    ],
)
def test_simulation_equals_exact_closed_form(n, rho, gamma, alpha):
    sim = metrics(simplex_tokens(n, rho).x, [gamma], alpha)
    exact = simplex_exact(n, rho, gamma, alpha)
    for key in ("self_weight", "lambda", "output_cosine", "entropy"):
        assert float(sim[key][0]) == pytest.approx(exact[key], abs=1e-10, rel=1e-10), key


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.8])
def test_critical_values_approach_the_limits_as_n_grows(rho):
    g = gamma_c(rho)
    errors = []
    for n in (32, 128, 512):
        sim = metrics(simplex_tokens(n, rho).x, [g])
        target = (0.5, 1 / (1 + 3 * rho), 4 * rho / (1 + 3 * rho))
        got = (float(sim["self_weight"][0]), float(sim["lambda"][0]), float(sim["output_cosine"][0]))
        errors.append(max(abs(a - b) for a, b in zip(got, target, strict=True)))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01
    lim = limits(g, rho)
    assert lim["regime"] == "critical" and lim["lambda"] == pytest.approx(1 / (1 + 3 * rho))


def test_sub_and_supercritical_rates():
    """Below γ_c: λ ≈ n^{2(γ(1−ρ)−1)}/ρ → 0; above: 1 − A_ii ≈ n^{1−γ(1−ρ)} → 0 (paper.md §2)."""
    rho = 0.5
    sub, sup = 0.5 * gamma_c(rho), 2.0 * gamma_c(rho)
    ns = (10**5, 10**6)  # the exact finite-n form; corrections to the rates are O(n^{-1/2}) here
    lam = [simplex_exact(n, rho, sub)["lambda"] for n in ns]
    off = [1 - simplex_exact(n, rho, sup)["self_weight"] for n in ns]
    slope = lambda v: math.log(v[1] / v[0]) / math.log(ns[1] / ns[0])  # noqa: E731
    assert slope(lam) == pytest.approx(2 * (sub * (1 - rho) - 1), abs=0.01)
    assert slope(off) == pytest.approx(1 - sup * (1 - rho), abs=0.01)
    sim = metrics(simplex_tokens(1024, rho).x, [sub, sup])
    assert float(sim["lambda"][0]) < 0.01 and float(sim["lambda"][1]) > 0.99
    assert limits(sub, rho)["lambda"] == 0.0 and limits(sup, rho)["lambda"] == 1.0


def test_residual_limits():
    rho, q = 0.5, 1.0
    for alpha, sub, crit in ((0.25, 0.0769, 0.529), (0.5, 0.200, 0.615), (1.0, 0.400, 0.720)):  # paper.md §2
        assert limits(0.5 * gamma_c(rho), rho, alpha, q)["lambda"] == pytest.approx(sub, abs=5e-4)
        assert limits(gamma_c(rho), rho, alpha, q)["lambda"] == pytest.approx(crit, abs=5e-4)
        assert simplex_exact(10**6, rho, gamma_c(rho), alpha)["lambda"] == pytest.approx(crit, abs=2e-3)


def test_jvp_equals_finite_differences_and_jacobian():
    x = gaussian_tokens(6, 4, 0.5, seed=1).x
    g = torch.Generator().manual_seed(2)
    v = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    for gamma, alpha in ((0.5, 0.0), (2.0, 0.0), (3.0, 0.7)):
        beta = torch.tensor([gamma * math.log(6)], dtype=torch.float64)
        jv = jvp(x, v, beta, alpha)[0]
        h = 1e-6
        for p in range(3):
            fd = (layer(x + h * v[p], gamma, alpha)[0] - layer(x - h * v[p], gamma, alpha)[0]) / (2 * h)
            assert torch.allclose(jv[p], fd, rtol=1e-6, atol=1e-8)
        jac = torch.func.jacfwd(lambda z, g=gamma, a=alpha: layer(z, g, a)[0])(x).reshape(24, 24)
        assert torch.allclose(jv.reshape(3, 24), v.reshape(3, 24) @ jac.T, rtol=1e-10, atol=1e-12)


def test_eta_hutchinson_matches_the_full_jacobian():
    x = gaussian_tokens(5, 3, 0.4, seed=0).x
    for gamma, alpha in ((0.3, 0.0), (2.5, 0.0), (1.5, 0.5)):
        exact = eta_exact(x, gamma, alpha)
        est = float(eta(x, [gamma], alpha, probes=20000, seed=1, dtype=torch.float64)[0])
        assert est == pytest.approx(exact, rel=0.03)


def test_eta_limits_of_theorem_2_4():
    """Simplex tokens, d = n: η → 0, (1/4)(1 − 1/d), (1 − 1/d) below, at and above γ_c (q = 1)."""
    n, rho = 512, 0.5
    x = simplex_tokens(n, rho).x
    est = eta(x, [0.3 * gamma_c(rho), gamma_c(rho), 3 * gamma_c(rho)], probes=4, dtype=torch.float64)
    assert float(est[0]) < 0.02
    assert float(est[1]) == pytest.approx(limits(gamma_c(rho), rho, d=n)["eta"], abs=0.03)
    assert float(est[2]) == pytest.approx(limits(3 * gamma_c(rho), rho, d=n)["eta"], abs=0.03)


def test_phase_diagram_and_sweep():
    grid = phase_diagram(32, 128, [0.2, 0.5, 0.8], [0.5, 1.0, 2.0], relative=True, metric="lambda")
    assert grid.values.shape == (3, 3) and torch.allclose(grid.gammas[1], torch.tensor([1.0, 2.0, 4.0]).double())
    assert (grid.values[:, 0] < grid.values[:, 2]).all()  # more scaling, less contraction
    sweep = sweep_n([64, 512], None, 0.5, [0.5, 1.0, 1.5], metric="self_weight")
    assert float(sweep[64][1]) == pytest.approx(simplex_exact(64, 0.5, 2.0)["self_weight"], abs=1e-10)
    assert float(sweep[512][0]) < float(sweep[64][0]) and float(sweep[512][2]) > float(sweep[64][2])  # sharper


def test_cli_phase_diagram_sweep_and_point(tmp_path, cli):
    def run(*args):
        return cli("theory", *args)

    code, cap = run(
        "phase-diagram",
        "--d",
        "16,2",
        "--n",
        "64",
        "--rho-grid",
        "0.1:0.8:4",
        "--gamma-grid",
        "0:6:5",
        "--out",
        str(tmp_path),
    )
    assert code == 0, cap.err
    rows = list(csv.DictReader((tmp_path / "phase_lambda.csv").open()))
    assert len(rows) == 2 * 4 * 5 and {r["d"] for r in rows} == {"16", "2"}
    assert (tmp_path / "phase_lambda.png").stat().st_size > 10_000
    code, cap = run("sweep-n", "--n", "32,64", "--ratio-grid", "0.5:1.5:5", "--out", str(tmp_path))
    assert code == 0 and (tmp_path / "sweep_lambda.png").stat().st_size > 10_000
    assert len(list(csv.DictReader((tmp_path / "sweep_lambda.csv").open()))) == 10
    code, cap = run("point", "--rho", "0.5", "--gamma", "2", "--n", "256")
    assert code == 0 and "critical" in cap.out and "0.500978" in cap.out  # A_ii = n/(2n − 1) at γ_c
    code, cap = run("phase-diagram", "--rho-grid", "0:1:3", "--out", str(tmp_path))
    assert code == 2 and "`rho` must be a finite number > 0 and < 1, got 0.0" in cap.err
