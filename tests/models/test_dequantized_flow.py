"""DequantizedFlowModel: a flow over integer levels, scored on the discrete scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ppgen
from ppgen.errors import DataError
from ppgen.inference import MLE
from ppgen.models.flows import DequantizedFlowModel

P1, P2 = np.array([0.6, 0.3, 0.1]), np.array([0.2, 0.2, 0.6])
H = float(-(P1 * np.log(P1)).sum() - (P2 * np.log(P2)).sum())  # nats per datum, 1.848


def _draw(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(3, n, p=P1), rng.choice(3, n, p=P2)], 1)


def _test_nll(m, x, reps=4) -> float:
    with torch.no_grad():
        xt = torch.as_tensor(x, dtype=torch.float32)
        return float(np.mean([-m.log_prob(xt).mean().item() for _ in range(reps)]))


@pytest.mark.parametrize("dequantize", ["uniform", "variational"])
def test_bound_approaches_the_entropy_of_known_discrete_data(dequantize):
    """The dequantisation bound is an upper bound on the cross-entropy (>= H, up to Monte Carlo
    error of the test set's mean, ~0.015 nats) and a trained flow comes close to H."""
    torch.manual_seed(0)
    kw = {"dequantizer_kwargs": {"hidden_features": 16}} if dequantize == "variational" else {}
    m = DequantizedFlowModel("maf", 2, num_bins=3, dequantize=dequantize, hidden_features=32, **kw)
    x_test = _draw(4000, 1)
    before = _test_nll(m, x_test)
    fit = ppgen.fit(m, {"x": _draw(3000, 0)}, MLE(steps=600, lr=3e-3, batch_size=256))
    after = _test_nll(m, x_test)
    assert fit.diagnostics["path"] == "declared"
    assert after >= H - 0.05
    assert after <= H + 0.2 < before
    # bits/dim is the same bound per dimension in bits
    bpd = float(m.bits_per_dim(torch.as_tensor(x_test, dtype=torch.float32)))
    assert bpd == pytest.approx(after / (2 * np.log(2)), rel=0.03)


def test_samples_are_levels_with_the_data_frequencies():
    torch.manual_seed(0)
    m = DequantizedFlowModel("maf", 2, num_bins=3, hidden_features=32)
    ppgen.fit(m, {"x": _draw(3000, 0)}, MLE(steps=600, lr=3e-3, batch_size=256))
    s = m.sample(4000).numpy()
    assert set(np.unique(s)) <= {0.0, 1.0, 2.0}
    for d, p in enumerate((P1, P2)):
        freq = np.bincount(s[:, d].astype(int), minlength=3) / len(s)
        assert np.abs(freq - p).max() < 0.08, (d, freq)


def test_levels_outside_the_range_are_named_errors():
    m = DequantizedFlowModel("maf", 2, num_bins=3, hidden_features=8)
    with pytest.raises(DataError, match="x"):
        ppgen.fit(m, {"x": np.array([[0, 1], [2, 3]])}, MLE(steps=1))
    with pytest.raises(ValueError, match="num_bins"):
        DequantizedFlowModel("maf", 2, num_bins=1)
    with pytest.raises(ValueError, match="dequantize"):
        DequantizedFlowModel("maf", 2, dequantize="gaussian")
