"""ppgen.nn_jax's conv layers against torch's, on the same weights: layout, padding, init."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from numpyro import handlers

from ppgen import nn_jax
from ppgen.models.gan import _ConvCritic


def _run(layer, x, weights=None, seed=0):
    """Run a ``numpyro.param`` layer on ``x``; returns (output, the trace's param values)."""
    fn = handlers.seed(layer, rng_seed=seed)
    if weights is not None:
        fn = handlers.substitute(fn, data=weights)
    tr = handlers.trace(fn).get_trace(jnp.asarray(x))
    params = {k: np.asarray(s["value"]) for k, s in tr.items() if s["type"] == "param"}
    return np.asarray(fn(jnp.asarray(x))), params


def _torch_weights(m: torch.nn.Module) -> dict:
    return {f"l.{k}": jnp.asarray(v.detach().numpy()) for k, v in m.named_parameters()}


# (kernel, stride, padding): the DCGAN's 4/2/1, no padding, odd kernels, a stride of 3
GEOMETRIES = [(4, 2, 1), (3, 1, 0), (3, 2, 1), (5, 3, 2)]


@pytest.mark.parametrize(("k", "s", "p"), GEOMETRIES)
@pytest.mark.parametrize(
    ("torch_cls", "layer"),
    [(torch.nn.Conv2d, nn_jax.conv2d), (torch.nn.ConvTranspose2d, nn_jax.conv_transpose2d)],
    ids=["conv2d", "conv_transpose2d"],
)
def test_conv_layers_match_torch(torch_cls, layer, k, s, p):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 6, 7)  # H != W catches swapped spatial axes
    m = torch_cls(5, 4, k, s, p)
    want = m(x).detach().numpy()
    fn = functools.partial(layer, "l", out_channels=4, kernel_size=k, stride=s, padding=p)
    got, _ = _run(fn, x.numpy(), _torch_weights(m))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5)
    # its own initialisation: torch's shapes and bound 1/sqrt(fan-in), where torch counts a
    # transposed conv's fan-in as out_channels * k * k (weight.size(1) * k * k)
    _, init = _run(fn, x.numpy())
    assert init["l.weight"].shape == tuple(m.weight.shape)
    fan_in = m.weight.shape[1] * k * k
    bound = 1 / np.sqrt(fan_in)
    assert 0.9 * bound < np.abs(init["l.weight"]).max() <= bound  # >= 180 draws of U(-b, b)
    assert np.abs(init["l.bias"]).max() <= bound
    # leading axes are batch axes
    out, _ = _run(fn, np.ones((2, 3, 5, 6, 7), np.float32))
    assert out.shape == (2, 3, *want.shape[1:])


def test_group_norm_matches_torch():
    torch.manual_seed(0)
    x = 3.0 * torch.randn(4, 6, 5, 5) + 1.0
    for groups in (1, 3):
        m = torch.nn.GroupNorm(groups, 6)
        torch.nn.init.uniform_(m.weight)
        torch.nn.init.uniform_(m.bias)
        norm = functools.partial(nn_jax.group_norm, "l", groups=groups)
        got, _ = _run(norm, x.numpy(), _torch_weights(m))
        np.testing.assert_allclose(got, m(x).detach().numpy(), atol=2e-5)
    # per sample: one image normalises the same alone as in a batch
    alone, _ = _run(lambda x: nn_jax.group_norm("l", x), x[:1].numpy())
    batch, _ = _run(lambda x: nn_jax.group_norm("l", x), x.numpy())
    np.testing.assert_allclose(alone[0], batch[0], atol=1e-6)
    with pytest.raises(ValueError, match="divide"):
        _run(lambda x: nn_jax.group_norm("l", x, 4), x.numpy())


@pytest.mark.parametrize("num_classes", [0, 3])
def test_conv_critic_matches_the_pyro_dcgan_critic(num_classes):
    torch.manual_seed(0)
    shape = (2, 8, 12)
    ref = _ConvCritic(shape, 3, num_classes)
    (c0, _, c1, _, _), lin = ref.features, ref.out
    params = [
        (jnp.asarray(m.weight.detach().numpy()), jnp.asarray(m.bias.detach().numpy()))
        for m in (c0, c1)
    ]
    params.append(
        (jnp.asarray(lin.weight.detach().numpy().T), jnp.asarray(lin.bias.detach().numpy()))
    )
    x, y = torch.randn(5, *shape), torch.arange(5) % 3
    labels = (y,) if num_classes else ()
    init, apply = nn_jax.conv_critic(shape, (3, 6), num_classes)
    assert [w.shape for w, _ in init(jax.random.PRNGKey(0))] == [tuple(w.shape) for w, _ in params]
    got = np.asarray(apply(params, jnp.asarray(x.numpy()), *(jnp.asarray(v) for v in labels)))
    np.testing.assert_allclose(got, ref(x, *labels).detach().numpy(), atol=2e-5)
    with pytest.raises(ValueError, match="built for images of shape"):
        apply(params, jnp.zeros((5, 2 * 2 * 8 * 12)))
