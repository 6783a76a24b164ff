"""Pyro programs that do not broadcast over a sample dim, run for all draws under vmap."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from ppgen.backends._pyro_vmap import vmap_log_likelihood, vmap_predictive
from ppgen.backends.pyro import OPS, Uncondition


def _matmul_model(X, y=None):
    """A user's regression: ``X @ w`` does not broadcast over an extra leading sample dim."""
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    b = pyro.sample("b", dist.Normal(0.0, 10.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    mu = pyro.deterministic("mu", b + X @ w)
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def _matmul_case(n=40, s=30):
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(n, 3, generator=g), torch.randn(n, generator=g)
    post = {
        "w": torch.randn(s, 3, generator=g),
        "b": torch.randn(s, generator=g),
        "sigma": torch.rand(s, generator=g) + 0.5,
    }
    return X, y, post


def test_vmap_log_likelihood_equals_the_per_draw_loop():
    X, y, post = _matmul_case()
    shapes = {"y": (40,), "w": (), "sigma": ()}
    fast = vmap_log_likelihood(_matmul_model, {"X": X, "y": y}, post, shapes)
    for i in range(len(post["b"])):  # the per-draw path: the program run as written
        one = OPS.log_likelihood(
            _matmul_model,
            {"X": X, "y": y},
            {k: v[i : i + 1].numpy() for k, v in post.items()},
            shapes,
        )
        for k in shapes:
            np.testing.assert_allclose(fast[k][i], one[k][0], rtol=1e-5, atol=1e-6, err_msg=k)


def test_vmap_predictive_draws_each_sample_from_its_own_distribution():
    X, _, post = _matmul_case(n=50, s=400)
    pyro.set_rng_seed(0)
    out = vmap_predictive(Uncondition()(_matmul_model), {"X": X, "y": None}, post, None)
    assert set(out) == {"mu", "y"} and out["y"].shape == (400, 50)
    mu = np.stack(
        [
            OPS.predictive(
                _matmul_model,
                {"X": X, "y": None},
                samples={k: v[i : i + 1].numpy() for k, v in post.items()},
            )["mu"][0]
            for i in range(5)
        ]
    )
    np.testing.assert_allclose(out["mu"][:5], mu, rtol=1e-5, atol=1e-6)  # deterministic: same
    z = (out["y"] - out["mu"]) / post["sigma"].numpy()[:, None]  # N(0, 1) if drawn right
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02, (z.mean(), z.std())
    assert not np.allclose(z[0], z[1])  # each draw its own noise


def test_vmap_refuses_control_flow_on_values_so_the_caller_loops():
    def branchy(X, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        loc = X @ w if w.sum() > 0 else -(X @ w)
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal(loc, 1.0), obs=y)

    X, y, post = _matmul_case()
    with pytest.raises(RuntimeError, match="data-dependent control flow"):
        vmap_log_likelihood(branchy, {"X": X, "y": y}, {"w": post["w"]}, {"y": (40,)})
