"""BackendOps.local_log_weights on both backends: exact per-datum weights when the guide is
the exact posterior, whichever way the particles run (plate, vmap, loop, chunks), and the
refusals of what does not split per datum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from ppgen.backends import get_backend
from ppgen.errors import CapabilityError

# z_i ~ N(0, 1), x_i ~ N(z_i, 1): x_i ~ N(0, 2) and z_i | x_i ~ N(x_i / 2, 1 / 2)
X = np.random.default_rng(0).normal(0.0, math.sqrt(2.0), 12).astype(np.float32)
EXACT = norm.logpdf(X.astype(np.float64), 0.0, math.sqrt(2.0))
SD = math.sqrt(0.5)


def ppl_of(backend: str):
    if backend == "pyro":
        import pyro as ppl
        import pyro.distributions as dist
    else:
        import numpyro as ppl
        import numpyro.distributions as dist
    return ppl, dist


def weights(backend, model, guide, **kw):
    ops = get_backend(backend)
    native = ops.native({"x": X})
    kw.setdefault("num_particles", 9)
    return ops.local_log_weights(model, guide, native, plate="data", seed=0, **kw)


def exact_guide(backend):
    ppl, dist = ppl_of(backend)

    def guide(x):
        with ppl.plate("data", x.shape[0]):
            ppl.sample("z", dist.Normal(x / 2.0, SD))

    return guide


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("how", ["broadcasts", "reshapes", "branches"])
def test_every_way_of_running_the_particles_gives_the_exact_weights(backend, how):
    """``reshapes`` breaks the particle plate (vmap or the loop runs it); ``branches`` reads a
    value in Python (NumPyro: neither jit nor vmap can, the loop does)."""
    ppl, dist = ppl_of(backend)

    def model(x):
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Normal(0.0, 1.0))
            if how == "reshapes":
                z = z.reshape(x.shape[0])
            elif how == "branches" and float(z.sum()) > 1e9:
                z = z + 1.0
            ppl.sample("x", dist.Normal(z, 1.0), obs=x)

    w = weights(backend, model, exact_guide(backend))
    assert w.shape == (9, 12) and w.dtype == np.float64
    np.testing.assert_allclose(w, np.broadcast_to(EXACT, w.shape), atol=1e-5)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_chunks_of_particles_are_drawn_afresh_and_seeded(backend):
    ppl, dist = ppl_of(backend)

    def model(x):
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Normal(0.0, 1.0))
            ppl.sample("x", dist.Normal(z, 1.0), obs=x)

    def wide(x):  # not the posterior: the weights vary
        with ppl.plate("data", x.shape[0]):
            ppl.sample("z", dist.Normal(x / 2.0, 1.0))

    one = weights(backend, model, wide, num_particles=40)
    small = weights(backend, model, wide, num_particles=40, max_values=200)  # 2 per chunk
    assert one.shape == small.shape == (40, 12)
    assert len({tuple(np.round(r, 5)) for r in small}) == 40  # no particle repeats
    np.testing.assert_array_equal(one, weights(backend, model, wide, num_particles=40))
    # the ELBO of each datum, E_q[log w] = log p(x) - KL(q || p(z | x)), within MC error
    kl = math.log(SD / 1.0) + 1.0 / (2 * SD**2) - 0.5
    for w in (one, small):
        assert w.mean() == pytest.approx((EXACT - kl).mean(), abs=0.3)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_terms_that_do_not_split_per_datum_are_refused_naming_the_site(backend):
    ppl, dist = ppl_of(backend)

    def model(x):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Normal(mu, 1.0))
            ppl.sample("x", dist.Normal(z, 1.0), obs=x)

    def global_guide(x):
        ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("data", x.shape[0]):
            ppl.sample("z", dist.Normal(x / 2.0, SD))

    with pytest.raises(CapabilityError, match=r"does not draw the latent site\(s\) \['mu'\]"):
        weights(backend, model, exact_guide(backend))
    with pytest.raises(CapabilityError, match=r"\['mu'\] lie outside the data plate `data`"):
        weights(backend, model, global_guide)

    def point_mass(x):
        with ppl.plate("data", x.shape[0]):
            ppl.sample("z", dist.Delta(x / 2.0))

    def local_model(x):
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Normal(0.0, 1.0))
            ppl.sample("x", dist.Normal(z, 1.0), obs=x)

    with pytest.raises(CapabilityError, match="point mass"):
        weights(backend, local_model, point_mass)


def test_pyro_leaves_the_global_rng_alone():
    ppl, dist = ppl_of("pyro")

    def model(x):
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Normal(0.0, 1.0))
            ppl.sample("x", dist.Normal(z, 1.0), obs=x)

    state = torch.get_rng_state()
    weights("pyro", model, exact_guide("pyro"))
    assert torch.equal(state, torch.get_rng_state())
