"""The one optimiser table: named groups, partial steps, schedules, clipping, resume, NumPyro."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ppgen.errors import EstimatorError
from ppgen.inference import Optim


def _quadratic_step(opt, *tensors):
    opt.zero_grad()
    sum((t**2).sum() for t in tensors).backward()


def test_groups_have_their_own_learning_rate_and_betas():
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = Optim("adam", 0.01, groups={"critic": {"lr": 0.1, "betas": (0.0, 0.9)}}).torch(
        {"generator": [a], "critic": [b]}
    )
    _quadratic_step(opt, a, b)
    opt.step()
    # Adam's first step moves every coordinate by lr (the gradient's sign times lr)
    np.testing.assert_allclose(a.detach().numpy(), 1 - 0.01, rtol=1e-5)
    np.testing.assert_allclose(b.detach().numpy(), 1 - 0.1, rtol=1e-5)


def test_a_partial_step_updates_only_the_named_groups():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = Optim("sgd", 0.5).torch({"generator": [a], "critic": [b]})
    _quadratic_step(opt, a, b)
    opt.step(["critic"])
    np.testing.assert_allclose(a.detach().numpy(), 1.0)  # untouched
    np.testing.assert_allclose(b.detach().numpy(), 1.0 - 0.5 * 2.0)  # sgd: x - lr * 2x


def test_lr_decay_reaches_the_total_factor_and_clipping_bounds_the_step():
    a = torch.ones(4, requires_grad=True)
    opt = Optim("sgd", 1.0, lr_decay=0.01).torch([a], total_steps=10)
    for _ in range(10):
        _quadratic_step(opt, a)
        opt.step()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.01, rel=1e-9)
    b = torch.full((4,), 10.0, requires_grad=True)
    opt = Optim("sgd", 1.0, clip_norm=0.5).torch([b])
    _quadratic_step(opt, b)
    opt.step()
    # the gradient (20, 20, 20, 20) has norm 40; clipped to 0.5 the step has norm 0.5
    assert float((10.0 - b.detach()).norm()) == pytest.approx(0.5, rel=1e-5)


def test_state_dict_resumes_bit_for_bit():
    def run(steps, sd=None):
        torch.manual_seed(0)
        a = torch.randn(5, requires_grad=True)
        opt = Optim("adam", 0.1, lr_decay=0.1).torch([a], total_steps=20)
        if sd is not None:
            with torch.no_grad():
                a.copy_(sd["a"])
            opt.load_state_dict(sd["opt"])
        for _ in range(steps):
            _quadratic_step(opt, a)
            opt.step()
        return a.detach().clone(), opt.state_dict()

    straight, _ = run(20)
    half, sd = run(10)
    resumed, _ = run(10, {"a": half, "opt": sd})
    assert torch.equal(straight, resumed)


def test_new_params_join_their_group_once():
    a = torch.ones(2, requires_grad=True)
    opt = Optim("adam", 0.1).torch([a])
    b = torch.ones(2, requires_grad=True)
    opt.add([a, b, b])
    assert len(opt.params) == 2 and len(opt.optimizer.param_groups) == 2


def test_bad_settings_are_named():
    with pytest.raises(EstimatorError, match="Unknown `optim='adamx'`.*adam"):
        Optim("adamx")
    with pytest.raises(EstimatorError, match="`lr`"):
        Optim("adam", -1.0)
    with pytest.raises(EstimatorError, match="group 'critic' has unknown option"):
        Optim("adam", groups={"critic": {"momentum": 0.9}})


def test_numpyro_optimiser_plain_and_per_group():
    import numpyro.optim as nopt

    params = {"gen": jnp.ones(2), "critic": jnp.ones(2)}
    grads = {"gen": 2 * params["gen"], "critic": 2 * params["critic"]}

    def one_step(opt):
        state = opt.init(params)
        return opt.get_params(opt.update(grads, state, value=jnp.zeros(())))

    plain = one_step(Optim("adam", 0.01).numpyro())
    raw = one_step(nopt.Adam(0.01))
    for k in params:  # no groups: NumPyro's own optimiser, the same numbers
        np.testing.assert_array_equal(plain[k], raw[k])
    spec = Optim("adam", 0.01, groups={"critic": {"lr": 0.1}})
    grouped = one_step(spec.numpyro(group_of=lambda name: "critic" if name == "critic" else "x"))
    np.testing.assert_allclose(grouped["gen"], 1 - 0.01, rtol=1e-5)
    np.testing.assert_allclose(grouped["critic"], 1 - 0.1, rtol=1e-5)
    assert isinstance(jax.tree_util.tree_leaves(grouped)[0], jax.Array)
