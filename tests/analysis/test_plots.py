"""Tests for ppgen.analysis.plots: PNG files from fits, InferenceData and loss histories."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import pytest

import ppgen
from ppgen.analysis.plots import plot_loss, plot_posterior, plot_trace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1000
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def fit():
    def model(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        scale = pyro.sample("scale", dist.HalfNormal(2.0))
        with pyro.plate("data", 20):
            pyro.sample("x", dist.Normal(mu, scale), obs=x)

    x = np.random.default_rng(0).normal(1.0, 1.0, 20)
    return ppgen.fit(model, {"x": x}, ppgen.inference.SVI(steps=50, lr=0.05, num_draws=200))


@pytest.fixture
def idata():
    import arviz as az

    rng = np.random.default_rng(0)
    return az.from_dict(
        posterior={"mu": rng.normal(size=(2, 100)), "theta": rng.normal(size=(2, 100, 3))}
    )


@pytest.mark.parametrize("plot", [plot_trace, plot_posterior])
def test_plots_of_a_fit_and_of_inference_data_are_pngs(plot, fit, idata, tmp_path):
    plot(fit, tmp_path / "fit.png")
    plot(idata, tmp_path / "idata.png")
    assert_png(tmp_path / "fit.png")
    assert_png(tmp_path / "idata.png")
    assert plt.get_fignums() == []  # figures are closed after saving


def test_posterior_panels_are_capped_and_var_names_respected(tmp_path):
    import arviz as az

    from ppgen.analysis.plots import MAX_POSTERIOR_PANELS, _posterior_vars

    rng = np.random.default_rng(0)
    idata = az.from_dict(
        posterior={"a": rng.normal(size=(1, 50)), "big": rng.normal(size=(1, 50, 40))}
    )
    assert _posterior_vars(idata, MAX_POSTERIOR_PANELS, per_element=True) == ["a"]
    assert _posterior_vars(idata, 12, per_element=False) == ["a", "big"]
    plot_posterior(idata, tmp_path / "p.png")  # no max_subplots warning (warnings are errors)
    plot_trace(idata, tmp_path / "t.png", var_names=["big"])
    assert_png(tmp_path / "p.png")
    assert_png(tmp_path / "t.png")


def test_plot_loss_from_a_fit_and_from_a_history(fit, tmp_path):
    plot_loss(fit, tmp_path / "loss.png")
    assert_png(tmp_path / "loss.png")
    plot_loss({"loss": list(np.geomspace(1e4, 1.0, 300))}, tmp_path / "log.png")
    assert_png(tmp_path / "log.png")
    assert plt.get_fignums() == []


def test_nothing_to_plot_raises_and_writes_nothing(idata, tmp_path):
    with pytest.raises(ValueError, match="`loss`"):
        plot_loss({"nll": [1.0]}, tmp_path / "loss.png")
    with pytest.raises(ValueError, match="no `posterior`"):
        plot_trace(_no_posterior(), tmp_path / "t.png")
    with pytest.raises(TypeError, match="fit_or_idata"):
        plot_posterior({"mu": np.zeros(3)}, tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []


def _no_posterior():
    import arviz as az

    return az.from_dict(observed_data={"x": np.zeros(3)})


def test_a_failing_save_leaves_no_file_and_closes_the_figure(fit, tmp_path, monkeypatch):
    import matplotlib.figure

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", boom)
    with pytest.raises(OSError, match="disk full"):
        plot_loss(fit, tmp_path / "loss.png")
    assert list(tmp_path.iterdir()) == []
    assert plt.get_fignums() == []
