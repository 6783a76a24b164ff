"""The differentiable backend operations (log_joint, simulate, score, module_params) on both
backends, against closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from numpyro import handlers
from scipy import stats

from ppgen.backends import get_backend
from ppgen.errors import EstimatorError, ProgramError

PYRO, NUMPYRO = get_backend("pyro"), get_backend("numpyro")
X = np.array([1.2, -0.3, 2.5, 0.7, 1.9])


def _lp_normal_normal(mu: float, x: np.ndarray, weights: np.ndarray | float = 1.0) -> float:
    """log N(mu | 0, 10) + sum_i w_i log N(x_i | mu, 1)."""
    return stats.norm.logpdf(mu, 0, 10) + np.sum(weights * stats.norm.logpdf(x, mu, 1))


# -- Normal-Normal programs, one per backend --------------------------------------------------


def nn_pyro(x=None, scale=1.0, mask=True):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(x)), poutine.scale(scale=scale), poutine.mask(mask=mask):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def nn_numpyro(x=None, scale=1.0, mask=True):
    mu = numpyro.sample("mu", ndist.Normal(0.0, 10.0))
    with numpyro.plate("data", len(x)), handlers.scale(scale=scale), handlers.mask(mask=mask):
        numpyro.sample("x", ndist.Normal(mu, 1.0), obs=x)


def two_latents_pyro(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    tau = pyro.sample("tau", dist.HalfNormal(1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, tau), obs=x)


def two_latents_numpyro(x=None):
    mu = numpyro.sample("mu", ndist.Normal(0.0, 10.0))
    tau = numpyro.sample("tau", ndist.HalfNormal(1.0))
    with numpyro.plate("data", len(x)):
        numpyro.sample("x", ndist.Normal(mu, tau), obs=x)


def _log_joint_and_grad(backend: str, mu: float, **kw) -> tuple[float, float]:
    if backend == "pyro":
        kw = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        m = torch.tensor(mu, requires_grad=True)
        lp = PYRO.log_joint(nn_pyro, {"x": torch.tensor(X, dtype=torch.float32), **kw}, {"mu": m})
        (g,) = torch.autograd.grad(lp, m)
        return lp.item(), g.item()
    kw = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    f = jax.jit(lambda m: NUMPYRO.log_joint(nn_numpyro, {"x": jnp.asarray(X), **kw}, {"mu": m}))
    lp, g = jax.value_and_grad(f)(jnp.float32(mu))
    return float(lp), float(g)


# -- log_joint --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("mu", [-3.0, 0.0, 0.8, 4.5])
def test_log_joint_normal_normal_value_and_gradient(backend, mu):
    lp, g = _log_joint_and_grad(backend, mu)
    assert lp == pytest.approx(_lp_normal_normal(mu, X), rel=1e-5)
    assert g == pytest.approx(-mu / 100.0 + np.sum(X - mu), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_log_joint_applies_scale_and_mask(backend):
    mask = np.array([True, False, True, True, False])
    lp, g = _log_joint_and_grad(backend, 0.8, scale=3.0, mask=mask)
    assert lp == pytest.approx(_lp_normal_normal(0.8, X, 3.0 * mask), rel=1e-5)
    assert g == pytest.approx(-0.8 / 100.0 + 3.0 * np.sum(mask * (X - 0.8)), rel=1e-5)


def test_log_joint_pyro_plate_subsample_scale():
    def model(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", 20, subsample=torch.arange(5)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    lp = PYRO.log_joint(
        model, {"x": torch.tensor(X, dtype=torch.float32)}, {"mu": torch.tensor(0.8)}
    )
    assert lp.item() == pytest.approx(_lp_normal_normal(0.8, X, 20 / 5), rel=1e-5)


def test_log_joint_pyro_gradient_reaches_params():
    def model(x=None):
        loc = pyro.param("loc", torch.tensor(0.5))
        mu = pyro.sample("mu", dist.Normal(loc, 10.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    lp = PYRO.log_joint(
        model, {"x": torch.tensor(X, dtype=torch.float32)}, {"mu": torch.tensor(2.0)}
    )
    lp.backward()
    loc = PYRO.module_params("loc")["loc"]
    assert loc.grad.item() == pytest.approx((2.0 - 0.5) / 100.0, rel=1e-5)


def test_log_joint_numpyro_params_are_pure_inputs():
    def model(x=None):
        loc = numpyro.param("loc", 0.0)
        mu = numpyro.sample("mu", ndist.Normal(loc, 10.0))
        with numpyro.plate("data", len(x)):
            numpyro.sample("x", ndist.Normal(mu, 1.0), obs=x)

    f = lambda p: NUMPYRO.log_joint(model, {"x": jnp.asarray(X)}, {"mu": 2.0}, params=p)  # noqa: E731
    g = jax.grad(f)({"loc": jnp.float32(0.5)})
    assert float(g["loc"]) == pytest.approx((2.0 - 0.5) / 100.0, rel=1e-5)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_log_joint_refuses_missing_latent_by_name(backend):
    if backend == "pyro":
        state = torch.get_rng_state()
        with pytest.raises(ProgramError, match="`tau`") as info:
            PYRO.log_joint(two_latents_pyro, {"x": torch.tensor(X)}, {"mu": torch.tensor(0.0)})
        assert torch.equal(torch.get_rng_state(), state)  # the error path drew nothing
    else:
        with pytest.raises(ProgramError, match="`tau`") as info:
            NUMPYRO.log_joint(two_latents_numpyro, {"x": jnp.asarray(X)}, {"mu": 0.0})
    assert "`mu`" not in str(info.value).split("have no value")[0]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_log_joint_unknown_value_name_lists_valid_sites(backend):
    ops, fn = (PYRO, nn_pyro) if backend == "pyro" else (NUMPYRO, nn_numpyro)
    data = ops.native({"x": X})
    mu = ops.native({"mu": np.float32(0.0)})["mu"]
    with pytest.raises(ProgramError, match=r"`muu`.*sites are `mu`, `x`"):
        ops.log_joint(fn, data, {"mu": mu, "muu": mu})


# -- simulate ---------------------------------------------------------------------------------

N = 4000
A, B = -2.0, 3.0


def gan_pyro(x=None):
    b = pyro.param("b", torch.tensor(B))
    with pyro.plate("data", N):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Delta(A * z + b), obs=x)


def gan_pyro_normal(x=None):
    b = pyro.param("b", torch.tensor(B))
    with pyro.plate("data", N):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(A * z + b, 1e-6), obs=x)


def gan_numpyro(x=None):
    a = numpyro.param("a", A)
    b = numpyro.param("b", B)
    with numpyro.plate("data", N):
        z = numpyro.sample("z", ndist.Normal(0.0, 1.0))
        numpyro.sample("x", ndist.Delta(a * z + b), obs=x)


def _check_moments(x: np.ndarray) -> None:
    # mean: sd |A|/sqrt(N) = 0.032; sd: about |A|/sqrt(2N) = 0.022; 5 standard errors each
    assert abs(x.mean() - B) < 5 * abs(A) / np.sqrt(N)
    assert abs(x.std() - abs(A)) < 5 * abs(A) / np.sqrt(2 * N)


@pytest.mark.parametrize("model", [gan_pyro, gan_pyro_normal])
def test_simulate_pyro_draws_observed_sites_with_gradients(model):
    obs = torch.full((N,), 1000.0)
    out = PYRO.simulate(model, {"x": obs}, seed=3)
    assert set(out) == {"z", "x"}
    x = out["x"]
    _check_moments(x.detach().numpy())
    assert not torch.any(x == 1000.0)  # the observed value was ignored
    x.mean().backward()
    assert PYRO.module_params("b")["b"].grad.item() == pytest.approx(1.0, abs=1e-5)


def test_simulate_numpyro_draws_observed_sites_pure_in_params():
    params = {"a": jnp.float32(A), "b": jnp.float32(B)}
    key = jax.random.PRNGKey(3)
    data = {"x": jnp.full((N,), 1000.0)}
    out = NUMPYRO.simulate(gan_numpyro, data, rng_key=key, params=params)
    _check_moments(np.asarray(out["x"]))

    def mean_x(p):
        return NUMPYRO.simulate(gan_numpyro, data, rng_key=key, params=p, sites=["x"])["x"].mean()

    g = jax.jit(jax.grad(mean_x))(params)
    assert float(g["b"]) == pytest.approx(1.0, abs=1e-5)
    assert float(g["a"]) == pytest.approx(float(out["z"].mean()), abs=1e-5)  # d/da = mean z


def test_simulate_pyro_seed_is_reproducible_and_leaves_global_rng():
    data = {"x": torch.zeros(N)}
    state = torch.get_rng_state()
    a = PYRO.simulate(gan_pyro, data, seed=7, sites=["x"])
    b = PYRO.simulate(gan_pyro, data, seed=7, sites=["x"])
    c = PYRO.simulate(gan_pyro, data, seed=8, sites=["x"])
    assert set(a) == {"x"}
    assert torch.equal(a["x"], b["x"]) and not torch.equal(a["x"], c["x"])
    assert torch.equal(torch.get_rng_state(), state)
    PYRO.simulate(gan_pyro, data)  # seed=None: the global RNG, advanced
    assert not torch.equal(torch.get_rng_state(), state)


def test_simulate_numpyro_keys_and_seed():
    data = {"x": jnp.zeros(N)}
    a = NUMPYRO.simulate(gan_numpyro, data, rng_key=jax.random.PRNGKey(7))["x"]
    b = NUMPYRO.simulate(gan_numpyro, data, seed=7)["x"]
    c = NUMPYRO.simulate(gan_numpyro, data, seed=8)["x"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(EstimatorError, match="exactly one of `rng_key`"):
        NUMPYRO.simulate(gan_numpyro, data)
    with pytest.raises(EstimatorError, match="`rng_key` is a NumPyro"):
        PYRO.simulate(gan_pyro, {"x": torch.zeros(N)}, rng_key=jax.random.PRNGKey(0))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_simulate_values_fix_latents(backend):
    z = np.linspace(-1.0, 1.0, N).astype(np.float32)
    if backend == "pyro":
        out = PYRO.simulate(gan_pyro, {"x": torch.zeros(N)}, {"z": torch.tensor(z)}, seed=0)
    else:
        out = NUMPYRO.simulate(gan_numpyro, {"x": jnp.zeros(N)}, {"z": jnp.asarray(z)}, seed=0)
    np.testing.assert_allclose(np.asarray(out["x"].tolist()), A * z + B, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_simulate_unknown_site_lists_valid_ones(backend):
    if backend == "pyro":
        call = lambda: PYRO.simulate(gan_pyro, {"x": torch.zeros(N)}, sites=["y"], seed=0)  # noqa: E731
    else:
        call = lambda: NUMPYRO.simulate(gan_numpyro, {"x": jnp.zeros(N)}, sites=["y"], seed=0)  # noqa: E731
    with pytest.raises(ProgramError, match=r"`y`.*sites are `z`, `x`"):
        call()


# -- score ------------------------------------------------------------------------------------

MU, SIGMA = 0.7, 1.5


def normal_pyro(x=None):
    mu = pyro.param("mu", torch.tensor(MU))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, SIGMA), obs=x)


def normal_numpyro(x=None):
    mu = numpyro.param("mu", MU)
    with numpyro.plate("data", len(x)):
        numpyro.sample("x", ndist.Normal(mu, SIGMA), obs=x)


def test_score_pyro_normal_and_its_derivative():
    s = PYRO.score(normal_pyro, {"x": torch.tensor(X, dtype=torch.float32)}, "x")
    assert s.shape == X.shape
    np.testing.assert_allclose(s.detach().numpy(), -(X - MU) / SIGMA**2, rtol=1e-5)
    s.sum().backward()  # create_graph=True: the score is differentiable again
    mu = PYRO.module_params("mu")["mu"]
    assert mu.grad.item() == pytest.approx(len(X) / SIGMA**2, rel=1e-5)


def test_score_numpyro_normal_and_its_derivative():
    data = {"x": jnp.asarray(X)}
    s = NUMPYRO.score(normal_numpyro, data, "x")
    assert s.shape == X.shape
    np.testing.assert_allclose(np.asarray(s), -(X - MU) / SIGMA**2, rtol=1e-5)
    g = jax.grad(lambda p: NUMPYRO.score(normal_numpyro, data, "x", params=p).sum())(
        {"mu": jnp.float32(MU)}
    )
    assert float(g["mu"]) == pytest.approx(len(X) / SIGMA**2, rel=1e-5)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_score_standard_normal_2d_event(backend):
    x = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)
    if backend == "pyro":

        def model(x=None):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("x", dist.Normal(torch.zeros(2), 1.0).to_event(1), obs=x)

        s = PYRO.score(model, {"x": torch.tensor(x)}, "x").detach().numpy()
    else:

        def model(x=None):
            with numpyro.plate("data", x.shape[0]):
                numpyro.sample("x", ndist.Normal(jnp.zeros(2), 1.0).to_event(1), obs=x)

        s = np.asarray(NUMPYRO.score(model, {"x": jnp.asarray(x)}, "x"))
    assert s.shape == (6, 2)
    np.testing.assert_allclose(s, -x, rtol=1e-6)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_score_with_latents_given_or_drawn_once(backend):
    if backend == "pyro":
        ops, fn, data = PYRO, two_latents_pyro, {"x": torch.tensor(X, dtype=torch.float32)}
        vals = {"mu": torch.tensor(0.4), "tau": torch.tensor(2.0)}
        arr = lambda t: t.detach().numpy()  # noqa: E731
    else:
        ops, fn, data = NUMPYRO, two_latents_numpyro, {"x": jnp.asarray(X)}
        vals = {"mu": jnp.float32(0.4), "tau": jnp.float32(2.0)}
        arr = np.asarray
    np.testing.assert_allclose(
        arr(ops.score(fn, data, "x", values=vals)), -(X - 0.4) / 4.0, rtol=1e-5
    )
    # drawn latents: once from the prior, the draws `simulate` makes under the same seed
    state = torch.get_rng_state()
    s1, s2 = arr(ops.score(fn, data, "x", seed=5)), arr(ops.score(fn, data, "x", seed=5))
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(s1, s2)
    drawn = ops.simulate(fn, data, seed=5, sites=["mu", "tau"])
    mu, tau = float(drawn["mu"]), float(drawn["tau"])
    np.testing.assert_allclose(s1, -(X - mu) / tau**2, rtol=1e-5)
    assert not np.allclose(s1, arr(ops.score(fn, data, "x", seed=6)))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_score_refuses_unknown_latent_and_discrete_sites(backend):
    if backend == "pyro":
        ops, fn, data = PYRO, two_latents_pyro, {"x": torch.tensor(X, dtype=torch.float32)}

        def coin(y=None):
            pyro.sample("y", dist.Bernoulli(0.3).expand([3]).to_event(1), obs=y)

        coin_data = {"y": torch.tensor([1.0, 0.0, 1.0])}
    else:
        ops, fn, data = NUMPYRO, two_latents_numpyro, {"x": jnp.asarray(X)}

        def coin(y=None):
            numpyro.sample("y", ndist.Bernoulli(0.3).expand([3]).to_event(1), obs=y)

        coin_data = {"y": jnp.array([1, 0, 1])}
    with pytest.raises(
        ProgramError, match=r"`site='xx'` is not a sample site.*observed sites are `x`"
    ):
        ops.score(fn, data, "xx")
    with pytest.raises(ProgramError, match=r"`site='mu'` is latent"):
        ops.score(fn, data, "mu")
    with pytest.raises(ProgramError, match="discrete"):
        ops.score(coin, coin_data, "y")


# -- ppgen.distributions: Implicit observed sites, Unnormalized (energy) sites -----------------


def test_simulate_implicit_generator_both_backends():
    pdist = pytest.importorskip("ppgen.distributions")
    from ppgen.errors import ImplicitDensityError

    def gen_pyro(x=None):
        b = pyro.param("b", torch.tensor(B))
        with pyro.plate("data", N):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", pdist.Implicit(A * z + b), obs=x)

    def gen_numpyro(x=None):
        b = numpyro.param("b", B)
        with numpyro.plate("data", N):
            z = numpyro.sample("z", ndist.Normal(0.0, 1.0))
            numpyro.sample("x", pdist.Implicit(A * z + b), obs=x)

    x = PYRO.simulate(gen_pyro, {"x": torch.full((N,), 1000.0)}, seed=0)["x"]
    _check_moments(x.detach().numpy())
    x.mean().backward()
    assert PYRO.module_params("b")["b"].grad.item() == pytest.approx(1.0, abs=1e-5)
    # an Implicit site has no density: log_joint says so with ppgen's own error class
    with pytest.raises(ImplicitDensityError):
        PYRO.log_joint(gen_pyro, {"x": x.detach()}, {"z": torch.zeros(N)})

    data = {"x": jnp.full((N,), 1000.0)}
    key, p = jax.random.PRNGKey(0), {"b": jnp.float32(B)}
    _check_moments(np.asarray(NUMPYRO.simulate(gen_numpyro, data, rng_key=key, params=p)["x"]))
    g = jax.grad(lambda q: NUMPYRO.simulate(gen_numpyro, data, rng_key=key, params=q)["x"].mean())
    assert float(g(p)["b"]) == pytest.approx(1.0, abs=1e-5)


def test_score_of_an_energy_model_is_minus_grad_energy():
    pdist = pytest.importorskip("ppgen.distributions")
    x = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)

    def model_pyro(x=None):  # E(x) = |x - m|^2 / (2 s^2): the score is -(x - m) / s^2
        m = pyro.param("m", torch.tensor([0.5, -1.0]))
        energy = lambda v: 0.5 * ((v - m) ** 2).sum(-1) / SIGMA**2  # noqa: E731
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", pdist.Unnormalized(energy, (2,), backend="pyro"), obs=x)

    def model_numpyro(x=None):
        m = numpyro.param("m", jnp.array([0.5, -1.0]))
        energy = lambda v: 0.5 * ((v - m) ** 2).sum(-1) / SIGMA**2  # noqa: E731
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", pdist.Unnormalized(energy, (2,), backend="numpyro"), obs=x)

    expected = -(x - np.array([0.5, -1.0])) / SIGMA**2
    s = PYRO.score(model_pyro, {"x": torch.tensor(x)}, "x")
    np.testing.assert_allclose(s.detach().numpy(), expected, rtol=1e-5)
    s.sum().backward()  # d/dm_j sum_i score_ij = n / s^2
    np.testing.assert_allclose(PYRO.module_params("m")["m"].grad.numpy(), [5 / SIGMA**2] * 2)
    s = NUMPYRO.score(model_numpyro, {"x": jnp.asarray(x)}, "x")
    np.testing.assert_allclose(np.asarray(s), expected, rtol=1e-5)


# -- module_params ----------------------------------------------------------------------------


def test_module_params_pyro_are_the_store_leaves():
    enc, dec, encoder = torch.nn.Linear(2, 3), torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)

    def model(x=None):
        pyro.module("enc", enc)
        pyro.module("dec", dec)
        pyro.module("encoder", encoder)
        scale = pyro.param("scale", torch.tensor(2.0), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(dec(enc(x)), scale).to_event(1), obs=x)

    x = torch.randn(4, 2)
    poutine.trace(model).get_trace(x)
    got = PYRO.module_params("enc")
    assert {k: tuple(v.shape) for k, v in got.items()} == {
        "enc$$$weight": (3, 2),
        "enc$$$bias": (3,),
    }  # `encoder` is a different module
    store = dict(pyro.get_param_store().named_parameters())
    assert all(v is store[k] and v.is_leaf and v.requires_grad for k, v in got.items())
    before = pyro.param("enc$$$weight").detach().clone()
    with torch.no_grad():
        got["enc$$$weight"].add_(1.0)
    torch.testing.assert_close(pyro.param("enc$$$weight"), before + 1.0)
    # an optimiser given only the encoder moves the encoder and nothing else
    dec_before = dec.weight.detach().clone()
    opt = torch.optim.SGD(got.values(), lr=0.1)
    (-PYRO.log_joint(model, {"x": x}, {})).backward()
    opt.step()
    assert not torch.equal(pyro.param("enc$$$weight"), before + 1.0)
    assert torch.equal(pyro.param("dec$$$weight"), dec_before)
    # constrained parameters come back unconstrained
    assert PYRO.module_params("scale")["scale"].item() == pytest.approx(np.log(2.0), rel=1e-6)
    assert len(PYRO.module_params()) == 7


def test_module_params_numpyro_equinox_and_plain_params():
    eqx = pytest.importorskip("equinox")
    from numpyro.contrib.module import eqx_module
    from numpyro.infer import SVI, Trace_ELBO

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    enc_net, dec_net = eqx.nn.Linear(2, 3, key=k1), eqx.nn.Linear(3, 2, key=k2)

    def model(x=None):
        enc = eqx_module("enc", enc_net)
        dec = eqx_module("dec", dec_net)
        gen_w = numpyro.param("gen_w", jnp.ones(2))
        numpyro.param("gen_b", 0.0)
        numpyro.param("generator_b", 0.0)
        with numpyro.plate("data", x.shape[0]):
            loc = jax.vmap(lambda v: dec(enc(v)))(x) * gen_w
            numpyro.sample("x", ndist.Normal(loc, 1.0).to_event(1), obs=x)

    svi = SVI(model, lambda x=None: None, numpyro.optim.Adam(1e-3), Trace_ELBO())
    x = jnp.ones((4, 2))
    params = svi.get_params(svi.init(jax.random.PRNGKey(1), x=x))
    enc = NUMPYRO.module_params("enc", params)
    assert list(enc) == ["enc$params"]
    assert enc["enc$params"].weight.shape == (3, 2) and enc["enc$params"].bias.shape == (3,)
    assert set(NUMPYRO.module_params("gen", params)) == {"gen_w", "gen_b"}
    assert set(NUMPYRO.module_params(None, params)) == set(params)
    with pytest.raises(ProgramError, match=r"`prefix='disc'` matches no parameter.*`dec`, `enc`"):
        NUMPYRO.module_params("disc", params)
    with pytest.raises(EstimatorError, match="`params` is required"):
        NUMPYRO.module_params("enc")


def test_module_params_pyro_unknown_prefix_lists_modules():
    pyro.module("enc", torch.nn.Linear(2, 3))
    with pytest.raises(ProgramError, match=r"`prefix='disc'` matches no parameter.*`enc`"):
        PYRO.module_params("disc")


# -- simulator: the per-step form of simulate --------------------------------------------------


def _generator_pyro(x=None, s=None):
    b = pyro.param("b", torch.tensor(3.0))
    with pyro.plate("data", 4):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(2.0 * z + b, s), obs=x)


def test_simulator_pyro_draws_what_simulate_draws_with_gradients():
    pyro.clear_param_store()
    kw = {"x": torch.zeros(4), "s": torch.tensor(0.5)}
    sim = PYRO.simulator(_generator_pyro, ["x", "z"])
    for _ in range(3):  # the first call is the checked simulate, the later ones the lean path
        torch.manual_seed(7)
        lean = sim(kw)
        torch.manual_seed(7)
        full = PYRO.simulate(_generator_pyro, kw, sites=["x", "z"])
        for k in ("x", "z"):
            torch.testing.assert_close(lean[k], full[k], rtol=0, atol=0)
    lean["x"].sum().backward()  # d sum(x) / db = 4: the draws carry the graph
    assert pyro.param("b").grad.item() == pytest.approx(4.0)


def test_simulator_pyro_still_checks_arguments_within_its_period():
    from ppgen.backends._pyro_ops import VALIDATE_EVERY

    pyro.clear_param_store()
    sim = PYRO.simulator(_generator_pyro, ["x"])
    sim({"x": torch.zeros(4), "s": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="scale"):  # a scale that left its support
        for _ in range(VALIDATE_EVERY):
            sim({"x": torch.zeros(4), "s": torch.tensor(-1.0)})


def test_simulator_checks_site_names_on_both_backends():
    with pytest.raises(ProgramError, match="nope"):
        PYRO.simulator(_generator_pyro, ["nope"])({"x": torch.zeros(4), "s": 1.0})
    with pytest.raises(ProgramError, match="nope"):
        NUMPYRO.simulator(nn_numpyro, ["nope"])(
            {"x": jnp.asarray(X)}, rng_key=jax.random.PRNGKey(0)
        )
