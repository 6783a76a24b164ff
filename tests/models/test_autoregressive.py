"""Autoregressive models: causal masks by gradient, cached sampling, likelihood heads."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from ppgen.models.autoregressive import (
    MADE,
    CharRNN,
    DiscretizedLogisticMixture,
    GatedPixelCNN,
    OutputHead,
    PixelCNN,
    WaveNet,
)


def dependency(params_fn, x: torch.Tensor) -> torch.Tensor:
    """``dep[i, j]`` is True when output ``i``'s parameters depend on input ``j``."""
    x = x.clone().requires_grad_(True)
    out = params_fn(x)
    out = out.reshape(x.shape[0], -1, out.shape[-1])[0]
    dep = torch.zeros(out.shape[0], x[0].numel(), dtype=torch.bool)
    for i in range(out.shape[0]):
        (g,) = torch.autograd.grad(out[i].sum(), x, retain_graph=True)
        dep[i] = g[0].reshape(-1) != 0
    return dep


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("order_agnostic", [False, True])
def test_made_output_depends_only_on_earlier_inputs(likelihood, order_agnostic):
    made = MADE(6, hidden_features=32, likelihood=likelihood, order_agnostic=order_agnostic)
    for _ in range(2):
        dep = dependency(made.params, torch.randn(3, 6))
        rank = torch.empty(6, dtype=torch.long)
        rank[made.order] = torch.arange(6)
        allowed = rank[None, :] < rank[:, None]
        assert not (dep & ~allowed).any()
        assert dep[made.order[-1]].sum() > 0  # the last variable sees something
        made.resample_masks(torch.Generator().manual_seed(1))
    if order_agnostic:
        assert not torch.equal(made.order, torch.arange(6))


@pytest.mark.parametrize("cls", [PixelCNN, GatedPixelCNN])
def test_pixelcnn_raster_order(cls):
    m = cls((2, 5, 5), hidden_channels=8, num_layers=3, likelihood="gaussian")
    dep = dependency(m.params, torch.randn(2, 2, 5, 5))  # outputs (C*H*W), inputs (C*H*W)
    pixel = torch.arange(25).repeat(2)  # raster index of each (channel, row, col)
    allowed = pixel[None, :] < pixel[:, None]
    assert not (dep & ~allowed).any()
    if cls is GatedPixelCNN:  # no blind spot: the last pixel sees every earlier pixel
        assert dep[24, :24].all() and dep[24, 25:49].all()
    else:  # the plain stack's blind spot: pixel (1, 4) is invisible to (2, 0) with 3 layers
        assert not dep[10, 9]


def test_wavenet_is_causal_with_the_stated_receptive_field():
    m = WaveNet(12, num_classes=3, channels=8, dilations=(1, 2), likelihood="gaussian")
    dep = dependency(m.params, torch.randn(2, 12))
    t = torch.arange(12)
    assert not (dep & ~(t[None, :] < t[:, None])).any()
    # receptive field 1 + 1 + 1 + 2 = 5 steps back, shifted by one
    assert dep[11, 11 - 5 : 11].all() and not dep[11, : 11 - 5].any()


def test_charrnn_is_causal():
    lm = CharRNN(5, length=8, hidden_size=16)
    x = torch.randint(0, 5, (1, 8))
    logits = lm.params(x)
    for t in range(8):
        y = x.clone()
        y[0, t:] = (y[0, t:] + 1) % 5
        changed = ~torch.isclose(lm.params(y), logits).all(-1)[0]
        assert not changed[: t + 1].any() and (t == 7 or changed[t + 1 :].any())


@pytest.mark.parametrize("likelihood", ["categorical", "logistic_mixture"])
def test_wavenet_cached_sampling_matches_naive(likelihood):
    m = WaveNet(10, num_classes=4, channels=8, dilations=(1, 2, 4), likelihood=likelihood)
    torch.manual_seed(3)
    fast = m.sample(5, cache=True)
    torch.manual_seed(3)
    slow = m.sample(5, cache=False)
    assert torch.equal(fast, slow)
    assert len(fast.unique()) > 1


def test_charrnn_cached_sampling_matches_naive():
    lm = CharRNN(6, length=12, hidden_size=16)
    torch.manual_seed(3)
    fast = lm.sample(4, cache=True)
    torch.manual_seed(3)
    slow = lm.sample(4, cache=False)
    assert torch.equal(fast, slow)


@pytest.mark.parametrize("num_bins", [2, 4, 256])
def test_discretized_logistic_mixture_sums_to_one_over_levels(num_bins):
    torch.manual_seed(0)
    d = DiscretizedLogisticMixture(
        torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 5), num_bins
    )
    levels = torch.linspace(-1, 1, num_bins)[:, None].expand(-1, 3)
    total = d.log_prob(levels).exp().sum(0)
    assert torch.allclose(total, torch.ones(3), atol=1e-4)
    samples = d.sample((1000,))
    on_grid = (samples + 1) / 2 * (num_bins - 1)
    assert torch.allclose(on_grid, on_grid.round(), atol=1e-4)


def test_discretized_logistic_frequencies_match_probabilities():
    d = DiscretizedLogisticMixture(
        torch.zeros(2), torch.tensor([-0.5, 0.5]), torch.full((2,), -1.5), 4
    )
    samples = d.sample((20_000,))
    levels = torch.linspace(-1, 1, 4)
    freq = torch.isclose(samples[:, None], levels, atol=1e-5).float().mean(0)
    assert torch.allclose(freq, d.log_prob(levels).exp(), atol=0.015)


@pytest.mark.parametrize(
    "make, data",
    [
        (lambda: MADE(4, 16), lambda: torch.bernoulli(torch.full((6, 4), 0.5))),
        (
            lambda: MADE(4, 16, likelihood="categorical", num_classes=3),
            lambda: torch.randint(0, 3, (6, 4)),
        ),
        (lambda: PixelCNN((1, 4, 4), 8, 2), lambda: torch.bernoulli(torch.full((6, 1, 4, 4), 0.5))),
        (
            lambda: GatedPixelCNN((1, 4, 4), 8, 2, likelihood="logistic_mixture", num_classes=4),
            lambda: torch.randint(0, 4, (6, 1, 4, 4)) / 3 * 2 - 1,
        ),
        (lambda: WaveNet(8, 3, 8, (1, 2)), lambda: torch.randint(0, 3, (6, 8))),
        (lambda: CharRNN(3, 8, hidden_size=8), lambda: torch.randint(0, 3, (6, 8))),
    ],
    ids=["made-bin", "made-cat", "pixelcnn", "gated-dmol", "wavenet", "charrnn"],
)
def test_program_contract(make, data):
    m, x = make(), data()
    trace = pyro.poutine.trace(m.model).get_trace(x=x)
    assert torch.allclose(trace.log_prob_sum(), m.log_prob(x).sum())
    assert (m.log_prob(x) <= 1e-6).all()  # discrete data: probabilities at most one
    (-m.log_prob(x).mean()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    prior = pyro.poutine.trace(m.model).get_trace(num_samples=3).nodes["x"]["value"]
    assert prior.shape == (3, *x.shape[1:])
    assert torch.isfinite(m.log_prob(prior)).all()


def test_made_fits_correlated_binary_data():
    """Two perfectly correlated bits: MADE must learn p(x2 | x1), which needs the masks."""
    torch.manual_seed(0)
    x1 = torch.bernoulli(torch.full((512, 1), 0.5))
    x = torch.cat([x1, x1, 1 - x1], dim=1)
    made = MADE(3, hidden_features=16)
    optim = torch.optim.Adam(made.parameters(), lr=3e-2)
    for _ in range(150):
        optim.zero_grad()
        (-made.log_prob(x).mean()).backward()
        optim.step()
    # the entropy of the data is log 2; an independent model would reach 3 log 2
    assert (-made.log_prob(x).mean()).item() == pytest.approx(math.log(2), abs=0.05)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="`likelihood` must be one of .*got 'poisson'"):
        OutputHead("poisson")
    with pytest.raises(ValueError, match=r"`x` must have shape \(N, 1, 4, 4\), got \(2, 1, 4, 5\)"):
        PixelCNN((1, 4, 4), 8, 1).log_prob(torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="`x` must be a .* token ids, got torch.float32"):
        CharRNN(3, 4).log_prob(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="`features` must be at least 2, got 1"):
        MADE(1)
