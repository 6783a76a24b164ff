"""Deep Markov model and VQ-VAE: contracts, straight-through gradients, exported codes."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch

import ppgen
from ppgen.errors import DataError
from ppgen.inference import MLE, SVI
from ppgen.inference.objectives.reparam import KLWarmup, ReparamELBO
from ppgen.models.sequential import DMM
from ppgen.models.vqvae import VQVAE, VectorQuantizer

RNG = np.random.default_rng(0)
SEQ = (RNG.random((12, 6, 5)) > 0.5).astype(np.float32)
BIN = (RNG.random((32, 6)) > 0.5).astype(np.float32)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("objective,k", [("trace", 1), ("iwae", 3)])
def test_dmm_contract(likelihood, objective, k):
    dmm = DMM(5, 3, hidden=8, rnn_dim=8, likelihood=likelihood)
    fit = ppgen.fit(
        dmm,
        {"x": SEQ},
        SVI(elbo=objective, num_particles=k, steps=4, batch_size=6, num_draws=2),
    )
    assert fit.diagnostics["path"] == "reparam" and np.isfinite(fit.history["loss"]).all()
    assert fit.draws["z_6"].shape == (1, 2, 12, 3)
    prog = fit.program
    native = prog.ops.native({"x": SEQ})
    dmm.zero_grad()
    ReparamELBO(objective, k, max_plate_nesting=1).differentiable_loss(
        prog.model, prog.guide, **native
    ).backward()
    for name, p in dmm.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert dmm.sample(4, 7).shape == (4, 7, 5)


def test_dmm_lean_elbo_equals_trace_elbo_with_mask_and_annealing():
    dmm = DMM(5, 3, hidden=8, rnn_dim=8)
    mask = np.ones((12, 6), dtype=bool)
    mask[:4, 4:] = False  # four shorter sequences
    prog = ppgen.Program(dmm)
    native, _ = prog.validate({"x": SEQ, "mask": mask})
    pyro.set_rng_seed(2)
    a = ReparamELBO(max_plate_nesting=1).loss(prog.model, prog.guide, **native)
    pyro.set_rng_seed(2)
    b = pyro.infer.Trace_ELBO().loss(prog.model, prog.guide, **native)
    assert a == pytest.approx(b, rel=1e-5)
    elbo = ReparamELBO()
    fit = ppgen.fit(
        dmm,
        {"x": SEQ, "mask": mask},
        SVI(elbo=elbo, steps=6, num_draws=2),
        callbacks=[KLWarmup(elbo, steps=4)],
    )
    assert elbo.beta == 1.0 and np.isfinite(fit.history["loss"]).all()
    with pytest.raises(DataError, match="`x` must have shape"):
        ppgen.fit(dmm, {"x": SEQ[..., :4]}, SVI(steps=1))


def test_vector_quantizer_straight_through_and_losses():
    vq = VectorQuantizer(6, 3, beta=0.5)
    z_e = torch.randn(4, 2, 3, requires_grad=True)
    z_q, codes, loss = vq(z_e)
    torch.testing.assert_close(z_q, vq.codebook[codes])  # forward value: the code vectors
    (z_q.sum() + 0 * loss.sum()).backward()
    torch.testing.assert_close(z_e.grad, torch.ones_like(z_e))  # straight-through
    z_e.grad = None
    vq.codebook.grad = None
    _, _, loss = vq(z_e)
    loss.sum().backward()
    e = vq.codebook[codes].detach()
    torch.testing.assert_close(z_e.grad, 0.5 * 2 * (z_e - e).detach())  # commitment gradient
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0


def test_vqvae_trains_and_exports_codes(tmp_path):
    torch.manual_seed(0)
    vq = VQVAE(6, num_codes=8, code_dim=2, num_latents=3, hidden_features=(16,))
    fit = ppgen.fit(vq, {"x": BIN}, SVI(steps=60, lr=0.01, batch_size=16))
    assert fit.diagnostics["path"] == "reparam"
    two_steps = MLE(steps=2, check_convergence=False)  # runs MLE, not meant to converge
    mle = ppgen.fit(VQVAE(6, num_codes=8, code_dim=2, num_latents=3), {"x": BIN}, two_steps)
    assert np.isfinite(mle.history["nll"]).all()
    loss = fit.history["loss"]
    assert np.isfinite(loss).all() and np.mean(loss[-10:]) < np.mean(loss[:10])
    codes = vq.encode_codes(torch.tensor(BIN))
    assert codes.dtype == torch.int64 and codes.shape == (32, 3)
    assert int(codes.min()) >= 0 and int(codes.max()) < 8
    assert vq.decode_codes(codes).shape == (32, 6) and vq.sample(5).shape == (5, 6)
    pred = fit.predict(sites=["codes"], seed=0)["codes"]
    np.testing.assert_array_equal(pred[0, 0], codes.numpy())
    fit.save(str(tmp_path / "run"))
    torch.manual_seed(1)
    fresh = VQVAE(6, num_codes=8, code_dim=2, num_latents=3, hidden_features=(16,))
    ppgen.load(str(tmp_path / "run"), fresh)
    torch.testing.assert_close(fresh.encode_codes(torch.tensor(BIN)), codes)
    with pytest.raises(DataError, match="codes"):
        vq.decode_codes(torch.full((2, 3), 9))
