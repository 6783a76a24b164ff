"""VAE zoo: contracts for every model x guide family x objective, the declared path, errors."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch

import ppgen
from ppgen.analysis.latent import (
    elbo,
    encode,
    image_grid,
    iwae_log_likelihood,
    latent_idata,
    reconstruct,
    traversal,
)
from ppgen.errors import DataError, EstimatorError
from ppgen.inference import SVI
from ppgen.inference.objectives.reparam import ReparamELBO
from ppgen.models.vae import VAE, ConditionalVAE, ConvVAE, HierarchicalVAE

RNG = np.random.default_rng(0)
BIN = (RNG.random((24, 6)) > 0.5).astype(np.float32)
UNIT = RNG.random((24, 6)).astype(np.float32)
LEVELS = RNG.integers(0, 256, (24, 6))
IMG = (RNG.random((24, 1, 4, 4)) > 0.5).astype(np.float32)
LABELS = RNG.integers(0, 3, 24)


def _case(name: str, family: str):
    kw = {"family": family, "flow_hidden_features": 8} if family == "flow" else {"family": family}
    if name in ("bernoulli", "cbernoulli", "gaussian", "categorical"):
        data = {"bernoulli": BIN, "cbernoulli": UNIT, "gaussian": UNIT, "categorical": LEVELS}[name]
        return VAE(6, 2, (8,), name, **kw), {"x": data}
    if name == "conv":
        return ConvVAE((1, 4, 4), 2, channels=4, hidden_features=8, **kw), {"x": IMG}
    if name == "conditional":
        return ConditionalVAE(6, 2, num_classes=3, hidden_features=(8,), **kw), {
            "x": BIN,
            "y": LABELS,
        }
    return HierarchicalVAE(6, (3, 2), hidden_features=(8,), **kw), {"x": BIN}


MODELS = [
    "bernoulli",
    "cbernoulli",
    "gaussian",
    "categorical",
    "conv",
    "conditional",
    "hierarchical",
]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("family", ["normal", "flow"])
@pytest.mark.parametrize("objective,k", [("trace", 1), ("iwae", 3)])
def test_contract_finite_loss_gradients_shapes(name, family, objective, k):
    vae, data = _case(name, family)
    est = SVI(elbo=objective, num_particles=k, steps=3, batch_size=8, num_draws=2)
    fit = ppgen.fit(vae, data, est)
    assert np.isfinite(fit.history["loss"]).all() and len(fit.history["loss"]) == 3
    native = fit.program.ops.native(data)
    vae.zero_grad()
    ReparamELBO(objective, k, max_plate_nesting=1).differentiable_loss(
        fit.program.model, fit.program.guide, **native
    ).backward()
    for pname, p in vae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    n = 5
    kw = {"y": torch.arange(n) % 3} if name == "conditional" else {}
    assert tuple(vae.sample(n, **kw).shape) == (n, *vae.x_shape)
    z = encode(fit, data)
    assert z["z" if name != "hierarchical" else "z1"].shape[0] == 24


@pytest.mark.parametrize("name", ["bernoulli", "cbernoulli", "gaussian", "categorical"])
@pytest.mark.parametrize(
    "objective,ref",
    [
        ("trace", lambda: pyro.infer.Trace_ELBO()),
        ("meanfield", lambda: pyro.infer.TraceMeanField_ELBO()),
        (
            "iwae",
            lambda: pyro.infer.RenyiELBO(
                num_particles=4, vectorize_particles=True, max_plate_nesting=1
            ),
        ),
    ],
)
def test_declared_terms_equal_pyro_objective_for_same_params_and_noise(name, objective, ref):
    vae, data = _case(name, "normal")
    prog = ppgen.Program(vae)
    native, info = prog.validate(data)
    k = 4 if objective == "iwae" else 1
    obj = ReparamELBO(objective, k, max_plate_nesting=1)
    pyro.set_rng_seed(5)
    with torch.no_grad():
        a = float(obj.terms_loss(vae.elbo_terms(k, **native)))
    pyro.set_rng_seed(5)
    b = ref().loss(prog.model, prog.guide, **native)
    pyro.set_rng_seed(5)
    c = obj.loss(prog.model, prog.guide, **native)
    assert a == pytest.approx(b, rel=1e-5) and c == pytest.approx(b, rel=1e-5)


def _plain(vae):
    """The same program as plain functions: no declared capability, the handler path runs."""
    return ppgen.Program(vae.model, vae.guide)


def test_declared_and_reparam_paths_train_identically():
    runs = {}
    for wrap in (lambda v: v, _plain):
        torch.manual_seed(0)
        vae = VAE(6, 2, (8,))
        fit = ppgen.fit(wrap(vae), {"x": BIN}, SVI(steps=10, batch_size=8, num_draws=2))
        runs[fit.diagnostics["path"]] = fit.history["loss"]
    assert sorted(runs) == ["declared", "reparam"]
    np.testing.assert_allclose(runs["declared"], runs["reparam"], rtol=1e-4)


def test_plain_svi_takes_the_declared_path_and_trains_like_pyro():
    """``SVI()`` evaluates a zoo VAE from its declared ELBO terms; with Pyro's own ELBO object
    it runs Pyro's objective. Same seed, same objective, same Adam: the losses agree."""
    runs = {}
    for objective in ("trace", pyro.infer.Trace_ELBO()):
        torch.manual_seed(0)
        vae = VAE(6, 2, (8,))
        fit = ppgen.fit(vae, {"x": BIN}, SVI(elbo=objective, steps=10, batch_size=8, num_draws=2))
        runs[fit.diagnostics["path"]] = fit.history["loss"]
    assert sorted(runs) == ["declared", "pyro"]
    np.testing.assert_allclose(runs["declared"], runs["pyro"], rtol=1e-4)
    # another guide than the VAE's own encoder: its terms do not apply, the handlers run
    torch.manual_seed(0)
    fit = ppgen.fit(VAE(6, 2, (8,)), {"x": BIN}, SVI(guide="delta", steps=2, num_draws=2))
    assert fit.diagnostics["path"] == "reparam"
    with pytest.raises(EstimatorError, match="engine"):
        SVI(engine="fast")
    with pytest.warns(DeprecationWarning, match="engine"):
        SVI(engine="lean")


@pytest.mark.parametrize("plain", [False, True])
def test_checkpoint_resume_is_bit_identical(tmp_path, plain):
    def run(steps, **kw):
        torch.manual_seed(0)
        vae = VAE(6, 2, (8,))
        est = SVI(steps=steps, batch_size=8, num_draws=2)
        prog = _plain(vae) if plain else vae
        return ppgen.fit(prog, {"x": BIN}, est, checkpoint_dir=str(tmp_path), **kw)

    full = run(10).history["loss"]
    run(5, checkpoint_every=5)
    resumed = run(10, resume=True).history["loss"]
    assert resumed == full


def test_save_load_identical_predictions(tmp_path):
    torch.manual_seed(0)
    vae = ConditionalVAE(6, 2, num_classes=3, hidden_features=(8,))
    data = {"x": BIN, "y": LABELS}
    fit = ppgen.fit(vae, data, SVI(steps=5, num_draws=3))
    pred = fit.predict(seed=1)["x"]
    fit.save(str(tmp_path / "run"))
    torch.manual_seed(1)
    fresh = ConditionalVAE(6, 2, num_classes=3, hidden_features=(8,))
    again = ppgen.load(str(tmp_path / "run"), fresh)
    np.testing.assert_array_equal(again.predict(seed=1)["x"], pred)
    for a, b in zip(fresh.parameters(), vae.parameters()):
        torch.testing.assert_close(a, b)


def test_bad_input_gets_named_errors():
    with pytest.raises(DataError, match="`x` must have shape"):
        ppgen.fit(VAE(6, 2, (8,)), {"x": BIN[:, :5]}, SVI(steps=1))
    with pytest.raises(DataError, match="support"):
        ppgen.fit(VAE(6, 2, (8,)), {"x": UNIT}, SVI(steps=1))
    with pytest.raises(DataError, match="`x` must have shape"):
        ppgen.fit(ConvVAE((1, 4, 4), 2, channels=4), {"x": IMG[:, :, :2]}, SVI(steps=1))
    with pytest.raises(DataError, match="`y` must be integer labels"):
        ppgen.fit(ConditionalVAE(6, 2, num_classes=3), {"x": BIN, "y": LABELS + 5}, SVI(steps=1))
    with pytest.raises(ValueError, match="likelihood"):
        VAE(6, 2, likelihood="poisson")


def test_analysis_helpers_on_a_small_fit(tmp_path):
    vae = VAE(6, 2, (8,))
    fit = ppgen.fit(vae, {"x": BIN}, SVI(steps=20, lr=0.01, num_draws=4))
    rec = reconstruct(fit, {"x": BIN})["x"]
    assert rec.shape == BIN.shape and ((rec >= 0) & (rec <= 1)).all()
    e = elbo(fit, {"x": BIN}, num_particles=20)
    iw = iwae_log_likelihood(fit, {"x": BIN}, num_particles=50, chunk=20, batch_size=10)
    assert iw.shape == (24,) and iw.mean() >= e - 0.05  # IWAE(K=50) >= ELBO up to MC error
    idata = latent_idata(fit, {"x": BIN}, subset=[0, 3, 5], num_draws=7)
    assert idata.posterior["z"].shape == (1, 7, 3, 2)
    t = traversal(
        vae,
        encode(fit, {"x": BIN})["z"][0],
        dims=[0],
        values=(-1, 0, 1),
        path=str(tmp_path / "t.png"),
    )
    assert t.shape == (1, 3, 6) and (tmp_path / "t.png").exists()
    assert image_grid(np.zeros((5, 2, 2)), ncols=2).shape == (8, 5)


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["normal", "flow"])
def test_vae_moves_with_device_and_trains_on_gpu(device, family):
    vae = VAE(6, 2, (8,), family=family)
    fit = ppgen.fit(vae, {"x": BIN}, SVI(steps=5, batch_size=8, num_draws=2), device=device)
    assert next(vae.parameters()).device.type == torch.device(device).type
    assert np.isfinite(fit.history["loss"]).all()
    assert iwae_log_likelihood(fit, {"x": BIN}, num_particles=10).shape == (24,)
