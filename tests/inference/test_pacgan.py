"""PacGAN's packing in Adversarial (``pack=m``): the packing against numpy, the critic's size,
refusals before work, recovery of a location-scale generator, and a fit where pairs matter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_adversarial import location_scale  # the same generator program

import ppgen
from ppgen.errors import EstimatorError
from ppgen.inference import Adversarial
from ppgen.inference._adversarial_common import pack

X1 = np.random.default_rng(0).normal(2.0, 0.5, 2048).astype(np.float32)


def conditional(backend):
    """A scalar datum beside an integer label ``y`` in {0, 1}: a covariate of the critic."""
    if backend == "pyro":
        import pyro
        import pyro.distributions as dist

        from ppgen.distributions import Implicit

        def gen(x=None, y=None):
            locs = pyro.param("locs", torch.zeros(2))
            with pyro.plate("data", len(y)):
                z = pyro.sample("z", dist.Normal(0.0, 1.0))
                pyro.sample("x", Implicit(locs[y] + 0.3 * z), obs=x)

        return gen
    import numpyro
    import numpyro.distributions as ndist

    from ppgen.distributions import Implicit

    def gen_np(x=None, y=None):
        locs = numpyro.param("locs", np.zeros(2, np.float32))
        with numpyro.plate("data", len(y)):
            z = numpyro.sample("z", ndist.Normal(0.0, 1.0))
            numpyro.sample("x", Implicit(locs[y] + 0.3 * z), obs=x)

    return gen_np


def _concat(x: np.ndarray, m: int) -> np.ndarray:
    """The definition: row j is data j*m .. j*m + m - 1, each flattened, side by side."""
    rows = len(x) // m
    return np.stack([np.concatenate([x[j * m + i].ravel() for i in range(m)]) for j in range(rows)])


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("shape", [(12,), (12, 2), (12, 2, 3), (13, 2)])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_pack_is_the_concatenation_of_m_flattened_data(backend, shape, m):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    labels = np.arange(shape[0]) % 5  # integer covariates pack the same way
    if backend == "torch":
        arr, back = torch.as_tensor, lambda a: a.numpy()
    elif backend == "jax":
        import jax.numpy as jnp

        arr, back = jnp.asarray, np.asarray
    else:
        arr, back = np.asarray, np.asarray
    if m == 1:  # unchanged, images and scalars alike (a user's conv critic keeps its shape)
        assert back(pack(arr(x), m)).shape == shape
        return
    packed, packed_labels = back(pack(arr(x), m)), back(pack(arr(labels), m))
    np.testing.assert_array_equal(packed, _concat(x, m))
    np.testing.assert_array_equal(packed_labels, _concat(labels, m))
    assert packed_labels.dtype.kind == "i"


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_packed_default_critic_is_sized_m_times_datum_and_covariates(backend):
    """2-D data, m = 3: the first layer takes 6 inputs; with a 2-class label beside a scalar
    datum, 3 x (1 + 2 one-hot) = 9 (one step: the labels reach the critic packed, one-hot)."""
    x = np.random.default_rng(0).standard_normal((96, 2)).astype(np.float32)
    est = lambda steps: Adversarial(steps=steps, pack=3, hidden=(8,), batch_size=48)  # noqa: E731
    fit = ppgen.fit(location_scale(backend, 2), {"x": x}, est(0), backend=backend)
    y = np.arange(96) % 2
    cfit = ppgen.fit(conditional(backend), {"x": x[:, 0], "y": y}, est(1), backend=backend)
    for f, width in ((fit, 6), (cfit, 9)):
        critic = f.auxiliary["discriminator"]
        first = critic["net.0.weight"] if backend == "pyro" else critic["leaf0"]
        assert first.shape == ((8, width) if backend == "pyro" else (width, 8))
    assert np.isfinite(cfit.history["loss_g"]).all()
    assert fit.sample(2)["x"].shape == (2, 96, 2)  # sampling is unaffected


def test_bad_pack_and_indivisible_batches_are_refused_before_work():
    for bad in (0, -2, 1.5, "2", True):
        with pytest.raises(EstimatorError, match="pack"):
            Adversarial(pack=bad)
    with pytest.raises(EstimatorError) as info:
        Adversarial(pack=4, batch_size=250)
    msg = str(info.value)
    assert "batch_size=250" in msg and "pack=4" in msg and "248" in msg
    Adversarial(pack=4, batch_size=256)  # divisible: fine
    # without minibatches the full batch (N = 250) is the batch
    with pytest.raises(EstimatorError, match="250 data"):
        ppgen.fit(location_scale("pyro"), {"x": X1[:250]}, Adversarial(pack=4, steps=5))
    # minibatches of 8 from 250 data: the last holds 2 < 4, nothing to pack
    with pytest.raises(EstimatorError, match="last minibatch"):
        ppgen.fit(location_scale("pyro"), {"x": X1[:250]}, Adversarial(pack=4, batch_size=8))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_critic_of_the_unpacked_width_is_refused_naming_the_packed_width(backend):
    if backend == "pyro":
        critic = torch.nn.Linear(2, 1)  # sized for one 2-D datum, not 4 of them
    else:
        import jax.numpy as jnp

        critic = (lambda key, x: jnp.zeros((2, 1)), lambda p, x: x @ p)
    with pytest.raises(EstimatorError) as info:
        ppgen.fit(
            location_scale(backend, 2),
            {"x": np.zeros((64, 2), np.float32)},
            Adversarial(discriminator=critic, pack=4, steps=5),
            backend=backend,
        )
    msg = str(info.value)
    assert "pack=4" in msg and "width 8" in msg and "`x`" in msg


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_packed_location_scale_gan_recovers_mean_and_scale(backend):
    """PacGAN2 on N(2, 0.5^2): the packed critic compares pairs, whose optimum is still the
    data's distribution (iid pairs); the tolerances are the unpacked test's."""
    fit = ppgen.fit(
        location_scale(backend),
        {"x": X1},
        Adversarial(loss="ns", steps=400, lr=0.02, hidden=(32, 32), batch_size=256, pack=2),
        backend=backend,
        seed=1,
    )
    loc, scale = float(fit.params["loc"]), math.exp(float(fit.params["log_s"]))
    assert abs(loc - 2.0) < 0.15, loc
    assert abs(scale - 0.5) < 0.15, scale


def paired(backend):
    """Data in consecutive pairs ``(a, rho a + sqrt(1 - rho^2) e)``: a generator of pairs with
    correlation ``tanh(r)``. Every datum is N(0, 1) whatever ``rho``: only a critic that sees
    each pair together (``pack=2`` on the data's own order) can tell ``rho``."""
    if backend == "pyro":
        import pyro
        import pyro.distributions as dist

        from ppgen.distributions import Implicit

        def gen(x=None):
            rho = torch.tanh(pyro.param("r", torch.tensor(0.0)))
            with pyro.plate("pairs", len(x) // 2):
                z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            b = rho * z[:, 0] + torch.sqrt(1 - rho**2) * z[:, 1]
            with pyro.plate("data", len(x)):
                pyro.sample("x", Implicit(torch.stack([z[:, 0], b], 1).reshape(-1)), obs=x)

        return gen
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist

    from ppgen.distributions import Implicit

    def gen_np(x=None):
        rho = jnp.tanh(numpyro.param("r", 0.0))
        with numpyro.plate("pairs", len(x) // 2):
            z = numpyro.sample("z", ndist.Normal(jnp.zeros(2), 1.0).to_event(1))
        b = rho * z[:, 0] + jnp.sqrt(1 - rho**2) * z[:, 1]
        with numpyro.plate("data", len(x)):
            numpyro.sample("x", Implicit(jnp.stack([z[:, 0], b], 1).reshape(-1)), obs=x)

    return gen_np


RHO = -0.8
_ab = np.random.default_rng(3).standard_normal((512, 2))
PAIRS = np.stack([_ab[:, 0], RHO * _ab[:, 0] + math.sqrt(1 - RHO**2) * _ab[:, 1]], 1)
PAIRS = PAIRS.reshape(-1).astype(np.float32)  # 1024 scalars, consecutive pairs correlated


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_pairs_matter_a_packed_critic_learns_their_correlation(backend):
    """Full batches keep the data's order, so ``pack=2`` shows the critic the data's pairs
    (x_{2j}, x_{2j+1}) beside the generator's pairs: the fit finds rho = -0.8. The control: the
    same data shuffled (pairs of independent data, rho = 0) give rho near 0. A packing that
    paired other data than ``pack`` says (say datum j with datum j + N/2), or real and
    generated data differently, would not find -0.8."""
    rho = {}
    for name, x in (("pairs", PAIRS), ("shuffled", np.random.default_rng(5).permutation(PAIRS))):
        fit = ppgen.fit(
            paired(backend),
            {"x": x},
            Adversarial(loss="ns", steps=150, lr=0.01, hidden=(32, 32), pack=2),
            backend=backend,
            seed=0,
        )
        rho[name] = math.tanh(float(fit.params["r"]))
    # measured: -0.79 / -0.79 (pyro / numpyro, seeds 0 and 1 alike) and |rho| < 0.03 shuffled
    assert abs(rho["pairs"] - RHO) < 0.1, rho
    assert abs(rho["shuffled"]) < 0.15, rho
