"""NumPyro chains on several JAX devices (issue 15, item 2): ``chain_method="parallel"`` runs
one chain per device, gives the sequential run's draws, and is refused before any work when
there are fewer devices than chains (NumPyro itself would warn and run them in sequence)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import ppgen
from ppgen.errors import EstimatorError
from ppgen.inference import NUTS

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


def test_parallel_chains_run_on_two_devices_and_equal_the_sequential_run(run_script, tmp_path):
    script = tmp_path / "chains.py"
    script.write_text(SCRIPT)
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = json.loads(run_script([str(script)], env=env).strip().splitlines()[-1])
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
