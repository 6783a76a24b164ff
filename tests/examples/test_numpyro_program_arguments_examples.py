"""Official NumPyro example programs with arguments that are not observations (issue 17),
copied as a user would, with only the data replaced:

- ``examples/ucbadmit.py``: ``glmm(dept, male, applications, admit=None)`` calls
  ``np.unique(dept)`` inside the model (it needs the covariate's values inside the jitted
  SVI step: ppgen closes over every argument it does not minibatch, as NumPyro's own
  ``SVI.run`` does);
- ``examples/hmm_enum.py`` (``model_1``): an ``args`` settings object, ``scan`` over time and
  enumerated hidden states, SVI with a delta guide (``AutoDelta(block(model, expose=...))``);
- ``examples/vae.py``: stax encoder and decoder registered with ``numpyro.module`` (their
  parameters are pytrees), ``hidden_dim``/``z_dim`` as integer arguments.

Each is fitted by two estimators (or one estimator with the user's guide and ppgen's), compared
with raw NumPyro on the same program (the same PRNG key gives the same NUTS chain or the same
SVI losses, up to float rounding; with shuffled minibatches, the loss of the same objective
and optimiser), and round-tripped with ``_roundtrip.roundtrip``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from _roundtrip import roundtrip
from _sequences import tone_sequences
from jax.example_libraries import stax
from jax.scipy.special import expit
from numpyro import handlers
from numpyro.contrib.control_flow import scan
from numpyro.handlers import mask
from numpyro.infer import MCMC as RawMCMC
from numpyro.infer import NUTS as RawNUTS
from numpyro.infer import SVI as RawSVI
from numpyro.infer import Trace_ELBO, TraceEnum_ELBO
from numpyro.infer.autoguide import AutoDelta

import ppgen
from ppgen.inference import NUTS, SVI


def _raw_nuts(model, num_warmup, num_samples, seed=0, **data):
    mcmc = RawMCMC(
        RawNUTS(model), num_warmup=num_warmup, num_samples=num_samples, progress_bar=False
    )
    mcmc.run(jax.random.PRNGKey(seed), **data)
    return {k: np.asarray(v) for k, v in mcmc.get_samples().items()}


def _same_chain(fit, raw, sites):
    """ppgen's NUTS runs NumPyro's with the fit's seed as its PRNG key: the same chain, up to
    the float rounding of a differently compiled program (rtol 1e-4; a different chain differs
    at the first draw by the posterior's sd)."""
    for k in sites:
        ours = np.asarray(fit.draws[k]).reshape(raw[k].shape)
        np.testing.assert_allclose(ours, raw[k], rtol=1e-4, atol=1e-5, err_msg=k)


# ----------------------------------------------------------------- ucbadmit.py
def glmm(dept, male, applications, admit=None):
    v_mu = numpyro.sample("v_mu", dist.Normal(0, jnp.array([4.0, 1.0])))
    sigma = numpyro.sample("sigma", dist.HalfNormal(jnp.ones(2)))
    L_Rho = numpyro.sample("L_Rho", dist.LKJCholesky(2, concentration=2))
    scale_tril = sigma[..., jnp.newaxis] * L_Rho
    # non-centered parameterization
    num_dept = len(np.unique(dept))
    z = numpyro.sample("z", dist.Normal(jnp.zeros((num_dept, 2)), 1))
    v = jnp.dot(scale_tril, z.T).T
    logits = v_mu[0] + v[dept, 0] + (v_mu[1] + v[dept, 1]) * male
    if admit is None:
        # we use a Delta site to record probs for predictive distribution
        probs = expit(logits)
        numpyro.sample("probs", dist.Delta(probs), obs=probs)
    numpyro.sample("admit", dist.Binomial(applications, logits=logits), obs=admit)


UCB = {  # the UCBadmit table (Bickel et al. 1975), as numpyro.examples.datasets loads it
    "dept": np.repeat(np.arange(6), 2),
    "male": np.tile([1, 0], 6),
    "applications": np.array([825, 108, 560, 25, 325, 593, 417, 375, 191, 393, 373, 341]),
    "admit": np.array([512, 89, 353, 17, 120, 202, 138, 131, 53, 94, 22, 24]),
}


def test_ucbadmit_py_nuts_is_raw_numpyros_chain_and_svi_agrees(tmp_path):
    fit = ppgen.fit(glmm, UCB, NUTS(num_warmup=150, num_samples=150), seed=0)
    _same_chain(fit, _raw_nuts(glmm, 150, 150, seed=0, **UCB), ["v_mu", "sigma", "z"])
    # SVI (AutoNormal) computes np.unique(dept) in the jitted step: dept is closed over
    svi = ppgen.fit(glmm, UCB, SVI(steps=1000, lr=0.03, num_draws=500), seed=0)
    # the male effect v_mu[1] is the example's question: near zero once departments are
    # modelled (NUTS mean ~ -0.1, sd ~ 0.1); mean-field SVI's mean within 0.15
    nuts_mu = np.asarray(fit.draws["v_mu"]).reshape(-1, 2).mean(0)
    svi_mu = np.asarray(svi.draws["v_mu"]).reshape(-1, 2).mean(0)
    assert abs(nuts_mu[1]) < 0.3 and abs(svi_mu[1] - nuts_mu[1]) < 0.15
    assert abs(svi_mu[0] - nuts_mu[0]) < 0.6  # the intercept: NUTS sd ~ 0.6
    roundtrip(fit, glmm, tmp_path / "nuts")
    roundtrip(svi, glmm, tmp_path / "svi")


# ----------------------------------------------------------------- hmm_enum.py, model_1
def model_1(sequences, lengths, args, include_prior=True):
    num_sequences, max_length, data_dim = sequences.shape
    with mask(mask=include_prior):
        probs_x = numpyro.sample(
            "probs_x", dist.Dirichlet(0.9 * jnp.eye(args.hidden_dim) + 0.1).to_event(1)
        )
        probs_y = numpyro.sample(
            "probs_y", dist.Beta(0.1, 0.9).expand([args.hidden_dim, data_dim]).to_event(2)
        )

    def transition_fn(carry, y):
        x_prev, t = carry
        with numpyro.plate("sequences", num_sequences, dim=-2):
            with mask(mask=(t < lengths)[..., None]):
                x = numpyro.sample(
                    "x", dist.Categorical(probs_x[x_prev]), infer={"enumerate": "parallel"}
                )
                with numpyro.plate("tones", data_dim, dim=-1):
                    numpyro.sample("y", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=y)
        return (x, t + 1), None

    x_init = jnp.zeros((num_sequences, 1), dtype=jnp.int32)
    # NB swapaxes: we move time dimension of `sequences` to the front to scan over it
    scan(transition_fn, (x_init, 0), jnp.swapaxes(sequences, 0, 1))


def hmm_enum_data():
    return {
        "sequences": tone_sequences(4, 8),
        "lengths": np.array([8, 7, 8, 6]),
        "args": argparse.Namespace(hidden_dim=2),
    }


def hmm_delta_guide():
    return AutoDelta(handlers.block(model_1, expose=["probs_x", "probs_y"]))


def test_hmm_enum_py_svi_with_a_delta_guide_is_raw_numpyros_and_ppgens_guide_fits(tmp_path):
    data = hmm_enum_data()
    # the user's delta guide: ppgen's update is NumPyro's SVI.update with the Namespace closed
    # over, from the same PRNG key: the same losses, up to float rounding
    fit = ppgen.fit(model_1, data, SVI(steps=100, lr=0.05), guide=hmm_delta_guide(), seed=0)
    assert fit.diagnostics["elbo"] == "enum"  # x summed out without naming the ELBO
    # a NumPyro autoguide draws its initial values when first called; ppgen first calls it
    # when it checks the guide before the fit, seeded with the fit's seed: so does this run
    guide = hmm_delta_guide()
    handlers.trace(handlers.seed(guide, jax.random.PRNGKey(0))).get_trace(**data)
    raw = RawSVI(model_1, guide, numpyro.optim.Adam(0.05), TraceEnum_ELBO())
    result = raw.run(jax.random.PRNGKey(0), 100, progress_bar=False, **data)
    np.testing.assert_allclose(fit.history["loss"], result.losses, rtol=1e-3)
    # SVI with ppgen's own guide (AutoNormal over the probabilities, x summed out)
    auto = ppgen.fit(model_1, data, SVI(steps=200, lr=0.05, num_draws=100), seed=0)
    assert auto.diagnostics["elbo"] == "enum"
    loss = auto.history["loss"]
    assert np.mean(loss[-50:]) < loss[0] - 5.0  # it learnt (measured: 105 -> 71 nats)
    static = {"args": data["args"]}
    # one observed site per time step inside scan: no single pointwise log-likelihood for LOO.
    # The user's guide makes the round trip (ppgen's AutoNormal over an enumerated program
    # makes it in tests/test_contract.py's gmm-svi-numpyro; here it would add 25 s of compiles)
    roundtrip(fit, model_1, tmp_path / "delta", guide=hmm_delta_guide(), loo=False, static=static)


# ----------------------------------------------------------------- vae.py
def encoder(hidden_dim, z_dim):
    return stax.serial(
        stax.Dense(hidden_dim, W_init=stax.randn()),
        stax.Softplus,
        stax.FanOut(2),
        stax.parallel(
            stax.Dense(z_dim, W_init=stax.randn()),
            stax.serial(stax.Dense(z_dim, W_init=stax.randn()), stax.Exp),
        ),
    )


def decoder(hidden_dim, out_dim):
    return stax.serial(
        stax.Dense(hidden_dim, W_init=stax.randn()),
        stax.Softplus,
        stax.Dense(out_dim, W_init=stax.randn()),
        stax.Sigmoid,
    )


def model(batch, hidden_dim=400, z_dim=100):
    batch = jnp.reshape(batch, (batch.shape[0], -1))
    batch_dim, out_dim = jnp.shape(batch)
    decode = numpyro.module("decoder", decoder(hidden_dim, out_dim), (batch_dim, z_dim))
    with numpyro.plate("batch", batch_dim):
        z = numpyro.sample("z", dist.Normal(0, 1).expand([z_dim]).to_event(1))
        img_loc = decode(z)
        return numpyro.sample("obs", dist.Bernoulli(img_loc).to_event(1), obs=batch)


def guide(batch, hidden_dim=400, z_dim=100):
    batch = jnp.reshape(batch, (batch.shape[0], -1))
    batch_dim, out_dim = jnp.shape(batch)
    encode = numpyro.module("encoder", encoder(hidden_dim, z_dim), (batch_dim, out_dim))
    z_loc, z_std = encode(batch)
    with numpyro.plate("batch", batch_dim):
        return numpyro.sample("z", dist.Normal(z_loc, z_std).to_event(1))


def test_vae_py_stax_modules_svi_against_raw_numpyro(tmp_path):
    from sklearn.datasets import load_digits

    # binarised digits: NumPyro validates a Bernoulli's support (grey levels are refused,
    # with the remedy; tests/examples/test_user_program_shapes.py covers that)
    x = (load_digits().data[:128] > 7).astype(np.float32)
    data = {"batch": x, "hidden_dim": 32, "z_dim": 4}
    fit = ppgen.fit(model, data, SVI(steps=200, lr=1e-2, batch_size=64), guide=guide, seed=0)
    raw = RawSVI(model, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
    state = raw.init(jax.random.PRNGKey(0), x[:64], hidden_dim=32, z_dim=4)
    update = jax.jit(raw.update, static_argnames=("hidden_dim", "z_dim"))
    rng, losses = np.random.default_rng(0), []
    for _ in range(100):  # 200 steps of 64 = 100 epochs of 2 shuffled batches
        idx = rng.permutation(128)
        for i in range(0, 128, 64):
            state, loss = update(state, x[idx[i : i + 64]], hidden_dim=32, z_dim=4)
            losses.append(float(loss) / 64)  # per datum
    ours = float(np.mean(fit.history["loss"][-50:])) / 128  # ppgen's: the full data (N/B)
    theirs = float(np.mean(losses[-50:]))
    assert abs(ours - theirs) < 0.05 * theirs  # the same objective and optimiser: within 5%
    assert ours < 0.8 * fit.history["loss"][0] / 128  # and it learnt
    iwae = ppgen.fit(
        model,
        data,
        SVI(steps=200, lr=1e-2, batch_size=64, elbo="iwae", num_particles=5),
        guide=guide,
        seed=0,
    )
    # the IWAE bound (k=5) is at least the ELBO: its loss per datum is no larger (noise: 3%)
    assert np.mean(iwae.history["loss"][-50:]) / 128 < theirs * 1.03
    roundtrip(fit, model, tmp_path / "svi", guide=guide, loo=False)
