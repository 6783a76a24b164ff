"""Implicit and Unnormalized on both backends: values, gradients, densities, shapes, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as dist
import pytest
import torch
from numpyro import handlers

from ppgen.backends import use_backend
from ppgen.distributions import Implicit, Unnormalized, density_kind
from ppgen.distributions._numpyro import NumPyroImplicit, NumPyroUnnormalized
from ppgen.distributions._pyro import PyroImplicit, PyroUnnormalized
from ppgen.errors import EnergySamplingError, ImplicitDensityError, ProgramError

Z = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], dtype=np.float32)


def test_implicit_torch_returns_the_value_and_passes_gradients():
    w = torch.tensor(1.5, requires_grad=True)
    b = torch.tensor(-0.5, requires_grad=True)
    z = torch.as_tensor(Z)
    d = Implicit(w * z**2 + b, event_dim=1)
    assert isinstance(d, PyroImplicit) and isinstance(d, Implicit)
    assert (tuple(d.batch_shape), tuple(d.event_shape)) == ((2,), (3,))
    x = d.rsample()
    assert torch.equal(x, w.detach() * z**2 + b.detach())
    assert torch.equal(d.sample((4,)), (w * z**2 + b).detach().expand(4, 2, 3))
    x.sum().backward()  # d/dw sum(w z^2 + b) = sum(z^2); d/db = number of entries
    assert w.grad.item() == pytest.approx(float((Z**2).sum()), rel=1e-6)
    assert b.grad.item() == Z.size


def test_implicit_jax_returns_the_value_and_passes_gradients():
    z = jnp.asarray(Z)
    d = Implicit(2.0 * z + 1.0)
    assert isinstance(d, NumPyroImplicit) and isinstance(d, Implicit)
    assert (d.batch_shape, d.event_shape) == ((2, 3), ())
    np.testing.assert_array_equal(d.sample(jax.random.key(0)), 2.0 * Z + 1.0)
    assert d.sample(jax.random.key(1), (5,)).shape == (5, 2, 3)

    def f(w: jax.Array) -> jax.Array:
        return Implicit(w * z**2).rsample(jax.random.key(0)).sum()

    assert float(jax.grad(f)(1.5)) == pytest.approx(float((Z**2).sum()), rel=1e-6)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_implicit_log_prob_raises_a_named_error(backend):
    value = torch.as_tensor(Z) if backend == "pyro" else jnp.asarray(Z)
    for d in (Implicit(value), Implicit(value).to_event(1), Implicit(value).mask(True)):
        with pytest.raises(ImplicitDensityError) as info:
            d.log_prob(value)
        msg = str(info.value)
        assert "An Implicit site" in msg and "adversarial" in msg
        assert isinstance(info.value, NotImplementedError)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_unnormalized_log_prob_is_minus_the_energy_exactly(backend):
    if backend == "pyro":
        x = torch.as_tensor(Z)

        def energy(v):
            return 0.5 * (v**2).sum(-1) + torch.sin(v).sum(-1)

        d = Unnormalized(energy, event_shape=(3,), batch_shape=(2,), backend="pyro")
        assert isinstance(d, PyroUnnormalized)
        assert torch.equal(d.log_prob(x), -energy(x))
    else:
        x = jnp.asarray(Z)

        def energy(v):
            return 0.5 * (v**2).sum(-1) + jnp.sin(v).sum(-1)

        d = Unnormalized(energy, event_shape=(3,), batch_shape=(2,), backend="numpyro")
        assert isinstance(d, NumPyroUnnormalized)
        np.testing.assert_array_equal(d.log_prob(x), -energy(x))
    assert isinstance(d, Unnormalized) and not isinstance(d, Implicit)
    assert not d.has_rsample
    assert tuple(d.expand((4, 2)).batch_shape) == (4, 2)
    assert density_kind(d.expand((4, 2)).to_event(1).mask(False)) == "energy"


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_unnormalized_sample_raises_a_named_error(backend):
    d = Unnormalized(lambda v: (v**2).sum(-1), (3,), backend=backend)
    with pytest.raises(EnergySamplingError) as info:
        d.sample() if backend == "pyro" else d.sample(jax.random.key(0))
    msg = str(info.value)
    assert "forward simulation" in msg and "Langevin" in msg


def test_unnormalized_picks_the_running_programs_backend():
    energy = lambda v: (v**2).sum(-1)  # noqa: E731
    assert isinstance(Unnormalized(energy, (2,)), PyroUnnormalized)
    with use_backend("numpyro"):  # how ppgen runs a NumPyro program
        assert isinstance(Unnormalized(energy, (2,)), NumPyroUnnormalized)
    with use_backend("pyro"):
        assert isinstance(Unnormalized(energy, (2,)), PyroUnnormalized)

    def model(x=None):  # a plain NumPyro program run by NumPyro's own handlers
        with numpyro.plate("data", 4):
            numpyro.sample("x", Unnormalized(energy, (2,)), obs=x)

    tr = handlers.trace(handlers.seed(model, 0)).get_trace(x=jnp.ones((4, 2)))
    assert isinstance(tr["x"]["fn"], NumPyroUnnormalized)
    assert tr["x"]["fn"].batch_shape == (4,)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_plates_expand_implicit_sites(backend):
    if backend == "pyro":

        def model(x=None):
            with pyro.plate("data", 4):
                z = pyro.sample("z", dist.Normal(0.0, 1.0))
                pyro.sample("x", Implicit(z.unsqueeze(-1) * torch.ones(2), event_dim=1), obs=x)

        tr = pyro.poutine.trace(pyro.poutine.uncondition(model)).get_trace(x=torch.zeros(4, 2))
        site = tr.nodes["x"]
        z = tr.nodes["z"]["value"]
    else:

        def model(x=None):
            with numpyro.plate("data", 4):
                z = numpyro.sample("z", nd.Normal(0.0, 1.0))
                numpyro.sample("x", Implicit(z[:, None] * jnp.ones(2), event_dim=1), obs=x)

        tr = handlers.trace(handlers.seed(model, 0)).get_trace()
        site = tr["x"]
        z = tr["z"]["value"]
    assert tuple(site["fn"].batch_shape) == (4,) and tuple(site["fn"].event_shape) == (2,)
    np.testing.assert_array_equal(np.asarray(site["value"]), np.asarray(z)[:, None] * np.ones(2))
    assert density_kind(site["fn"]) == "implicit"
    assert density_kind(dist.Normal(0.0, 1.0)) == density_kind(nd.Normal(0.0, 1.0)) == "explicit"


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Implicit(torch.zeros(2, 3), event_dim=3), ["`event_dim`", "[0, 2]", "3"]),
        (lambda: Implicit(jnp.zeros(2), event_dim=-1), ["`event_dim`", "-1"]),
        (lambda: Unnormalized(3.0, (2,)), ["`energy`", "callable", "float"]),
        (lambda: Unnormalized(abs, event_shape="ab"), ["`event_shape`", "'ab'"]),
        (lambda: Implicit(torch.zeros(2), backend="jax"), ["`backend`", "'jax'"]),
    ],
)
def test_bad_arguments_raise_named_errors(make, words):
    with pytest.raises(ProgramError) as info:
        make()
    for w in words:
        assert w in str(info.value), str(info.value)
