"""Dequantisation, logit preprocessing and bits/dim against known answers."""

from __future__ import annotations

import math

import pytest
import torch

from ppgen.data.images import (
    VariationalDequantizer,
    bits_per_dim,
    discrete_log_likelihood,
    logit_transform,
    sigmoid_transform,
    uniform_dequantize,
)
from ppgen.flows import build_flow


def uniform_on_unit_cube(y: torch.Tensor) -> torch.Tensor:
    inside = ((y >= 0) & (y <= 1)).reshape(y.shape[0], -1).all(-1)
    return torch.where(inside, 0.0, -math.inf)


def uniform_in_logit_space(alpha: float):
    """The pushforward of U[0, 1]^D through the logit preprocessing, in closed form."""

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(z)
        return (
            (torch.log(s) + torch.log1p(-s) - math.log(1 - 2 * alpha)).reshape(len(z), -1).sum(-1)
        )

    return log_prob


def test_uniform_dequantisation_stays_in_its_cell():
    x = torch.randint(0, 256, (2000, 1, 8, 8))
    x[0] = 255
    y = uniform_dequantize(x)
    assert y.dtype == torch.float32
    assert ((y * 256).floor() == x).all()
    assert (y >= x / 256).all() and (y < (x + 1) / 256).all()
    # and fills the cell uniformly
    assert (y * 256 - x).mean().item() == pytest.approx(0.5, abs=0.01)


def test_uniform_dequantisation_never_rounds_up_to_the_next_cell(monkeypatch):
    u = torch.ones(4).nextafter(torch.zeros(4))  # the largest float32 below one
    x = torch.full((4,), 255)
    assert ((x + u) / 256 == 1.0).all()  # the naive formula lands on the next cell's edge
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: u.expand(shape).clone())
    assert (uniform_dequantize(x) < 1.0).all()


@pytest.mark.parametrize("num_bins, bits", [(256, 8.0), (16, 4.0), (2, 1.0)])
def test_uniform_model_scores_log2_num_bins_bits(num_bins, bits):
    x = torch.randint(0, num_bins, (64, 1, 4, 4))
    bpd = bits_per_dim(uniform_on_unit_cube, x, num_bins, dequantize="uniform")
    assert bpd.item() == pytest.approx(bits, abs=1e-6)


def test_logit_jacobian_is_accounted_for():
    alpha = 0.05
    x = torch.randint(0, 256, (64, 3, 4, 4))
    bpd = bits_per_dim(uniform_in_logit_space(alpha), x, dequantize="uniform", logit=alpha)
    assert bpd.item() == pytest.approx(8.0, abs=1e-4)
    # forgetting the Jacobian would give a different number
    z, _ = logit_transform(uniform_dequantize(x), alpha)
    dims = x[0].numel()
    wrong = -(uniform_in_logit_space(alpha)(z) - dims * math.log(256)).mean() / (dims * math.log(2))
    assert abs(wrong.item() - 8.0) > 0.5


def test_logit_transform_matches_autograd_and_inverts():
    y = torch.rand(3, 4, dtype=torch.float64)
    z, ladj = logit_transform(y, 0.05)
    grads = torch.autograd.functional.jacobian(lambda v: logit_transform(v, 0.05)[0], y[0])
    assert torch.allclose(torch.linalg.slogdet(grads).logabsdet, ladj[0])
    assert torch.allclose(sigmoid_transform(z, 0.05), y)


def test_variational_dequantisation_is_a_valid_bound():
    deq = VariationalDequantizer(16, hidden_features=8)
    x = torch.randint(0, 256, (32, 1, 4, 4))
    y, log_q = deq(x)
    assert ((y * 256).floor() == x).all()
    assert torch.isfinite(log_q).all()
    # for a uniform model the true value is 8 bits: any q gives a bound of at least 8
    bpd = bits_per_dim(uniform_on_unit_cube, x, dequantize=deq)
    assert bpd.item() >= 8.0 - 1e-5
    bpd.backward()
    assert all(p.grad is not None for p in deq.parameters())


def test_flow_bits_per_dim_on_digits_is_finite_and_close_to_its_bound():
    flow = build_flow("realnvp", (1, 4, 4), hidden_features=8, num_levels=1)
    x = torch.randint(0, 256, (16, 1, 4, 4))
    bpd = bits_per_dim(flow.log_prob, x, dequantize="uniform", logit=0.05)
    assert torch.isfinite(bpd) and 0 < bpd.item() < 20


def test_discrete_data_without_dequantisation_is_rejected():
    x = torch.randint(0, 256, (4, 3))
    with pytest.raises(
        ValueError, match=r"`dequantize` is required for discrete `x` \(dtype torch.int64"
    ):
        bits_per_dim(uniform_on_unit_cube, x)
    with pytest.raises(ValueError, match="`dequantize` is required"):
        discrete_log_likelihood(uniform_on_unit_cube, x.float())


def test_bad_levels_are_rejected():
    with pytest.raises(ValueError, match=r"`x` must hold levels in 0..15 .* \[0, 255\]"):
        uniform_dequantize(torch.tensor([0, 255]), num_bins=16)
    with pytest.raises(ValueError, match="`x` must hold integer levels"):
        uniform_dequantize(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="`dequantize` must be 'uniform'"):
        bits_per_dim(uniform_on_unit_cube, torch.tensor([[1, 2]]), dequantize="gaussian")


def test_dequantised_input_is_accepted():
    y = uniform_dequantize(torch.randint(0, 256, (8, 5)))
    assert bits_per_dim(uniform_on_unit_cube, y).item() == pytest.approx(8.0, abs=1e-6)
