"""NumPyro on several JAX devices (issue 15, item 2): ``chain_method="parallel"`` runs one
chain per device, gives the sequential run's draws, and is refused before any work when there
are fewer devices than chains (NumPyro itself would warn and run them in sequence); the
``JaxDevices`` runner shards SVI's minibatches across devices and gives the one-device fit."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import ppgen
from ppgen.errors import EstimatorError
from ppgen.inference import NUTS, SVI, JaxDevices

# a script, so that the host device count is set before JAX starts (it cannot change after)
SCRIPT = r"""
import json, sys, warnings
import numpy as np, numpyro, numpyro.distributions as dist, ppgen
from ppgen.inference import NUTS

warnings.simplefilter("ignore")

def model(x=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("d", 20):
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)

x = np.random.default_rng(0).normal(1.0, 1.0, 20)
out = {}
for method in ("parallel", "sequential"):
    fit = ppgen.fit(model, {"x": x}, NUTS(200, 200, num_chains=2, chain_method=method), seed=0)
    out[method] = {"devices": fit.diagnostics["devices"], "mu": fit.draws["mu"].tolist()}
print(json.dumps(out))
"""


def on_two_devices(run_script, tmp_path, source: str) -> dict:
    """Run ``source`` as a script with two host devices; its last line of output, as JSON."""
    script = tmp_path / "script.py"
    script.write_text(source)
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    return json.loads(run_script([str(script)], env=env).strip().splitlines()[-1])


def test_parallel_chains_run_on_two_devices_and_equal_the_sequential_run(run_script, tmp_path):
    out = on_two_devices(run_script, tmp_path, SCRIPT)
    assert out["parallel"]["devices"] == "cpu:0, cpu:1"  # one chain per device
    assert out["sequential"]["devices"] == "cpu:0"
    par, seq = np.asarray(out["parallel"]["mu"]), np.asarray(out["sequential"]["mu"])
    assert par.shape == (2, 200)
    # each chain from its own key split from the seed, as the sequential run: the same draws
    # up to the float rounding of a differently compiled program
    np.testing.assert_allclose(par, seq, rtol=1e-5, atol=1e-6)
    prec = 20 + 1 / 100  # and the posterior is the conjugate one (MC error ~0.02)
    assert abs(par.mean() - 1.0 * 20 / prec) < 0.5


@pytest.mark.skipif(jax.local_device_count() > 1, reason="this process has several devices")
def test_more_parallel_chains_than_devices_are_refused_before_work():
    import numpyro
    import numpyro.distributions as dist

    def model(x=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("d", 3):
            numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    est = NUTS(10, 10, num_chains=2, chain_method="parallel")
    with pytest.raises(EstimatorError, match=r"JAX sees 1 device.*set_host_device_count\(2\)"):
        ppgen.fit(model, {"x": np.zeros(3)}, est)


SVI_SCRIPT = r"""
import json, warnings
import numpy as np, numpyro, numpyro.distributions as dist, ppgen
from ppgen.inference import SVI, JaxDevices

warnings.simplefilter("ignore")

def model(x=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("d", x.shape[0]):
        numpyro.sample("x", dist.Normal(mu, 1.0).expand([3]).to_event(1), obs=x)

x = np.random.default_rng(0).normal(1.0, 1.0, (100, 3)).astype(np.float32)
out = {}
for name, runner in (("sharded", JaxDevices(2)), ("one", None)):
    est = SVI(steps=100, batch_size=20, lr=0.05)
    fit = ppgen.fit(model, {"x": x}, est, seed=0, runner=runner)
    out[name] = {
        "devices": fit.diagnostics.get("devices"),
        "loss": fit.history["loss"],
        "params": {k: v.tolist() for k, v in fit.params.items()},
    }
print(json.dumps(out))
"""


def test_svi_minibatches_sharded_across_two_devices_equal_the_one_device_fit(run_script, tmp_path):
    out = on_two_devices(run_script, tmp_path, SVI_SCRIPT)
    assert out["sharded"]["devices"] == "cpu:0, cpu:1" and out["one"]["devices"] is None
    # the same batches and draws, computed in two halves: equal up to float rounding of the
    # split sums (losses ~400 nats; measured difference 6e-5)
    np.testing.assert_allclose(out["sharded"]["loss"], out["one"]["loss"], rtol=1e-5)
    for k, v in out["one"]["params"].items():
        np.testing.assert_allclose(out["sharded"]["params"][k], v, rtol=1e-4, atol=1e-5)


def test_jax_devices_refuses_what_it_cannot_shard_before_work():
    import pyro
    import pyro.distributions as pdist

    def numpyro_model(x=None):
        import numpyro
        import numpyro.distributions as dist

        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("d", x.shape[0]):
            numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def pyro_model(x=None):
        mu = pyro.sample("mu", pdist.Normal(0.0, 1.0))
        with pyro.plate("d", x.shape[0]):
            pyro.sample("x", pdist.Normal(mu, 1.0), obs=x)

    x = {"x": np.zeros(8, np.float32)}
    with pytest.raises(EstimatorError, match="NumPyro SVI or MLE.*pyro backend"):
        ppgen.fit(pyro_model, x, SVI(steps=2, batch_size=4), runner=JaxDevices(1))
    with pytest.raises(EstimatorError, match="batch_size=None"):
        ppgen.fit(numpyro_model, x, SVI(steps=2), runner=JaxDevices(1), backend="numpyro")
    with pytest.raises(EstimatorError, match="Adversarial does not shard its batches"):
        est = ppgen.inference.Adversarial(steps=2, batch_size=4)
        ppgen.fit(numpyro_model, x, est, runner=JaxDevices(1), backend="numpyro")
    n = jax.local_device_count()
    with pytest.raises(EstimatorError, match=f"JaxDevices\\({n + 1}\\) but JAX sees {n}"):
        est = SVI(steps=2, batch_size=4)
        ppgen.fit(numpyro_model, x, est, runner=JaxDevices(n + 1), backend="numpyro")
