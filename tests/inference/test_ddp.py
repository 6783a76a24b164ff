"""Data-parallel SVI across processes (issue 15, item 1): ``runner=DDP()`` under ``torchrun``
with 2 gloo processes gives the 1-process fit (the same global batches, gradients averaged
across processes), resumes from a checkpoint written by rank 0 with another number of
processes, and is refused before any work outside torchrun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyro
import pyro.distributions as dist
import pytest

import ppgen
from ppgen.errors import EstimatorError
from ppgen.inference import DDP, SVI

SCRIPT = r"""
import json, sys, warnings
import numpy as np, pyro, pyro.distributions as dist, torch
import ppgen
from ppgen.inference import DDP, SVI

warnings.simplefilter("ignore")
torch.set_num_threads(1)

def model(x=None):
    mu = pyro.sample("mu", dist.Normal(torch.zeros(3), 10.0).to_event(1))
    with pyro.plate("d", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0).to_event(1), obs=x)

if __name__ == "__main__":
    out, ckpt, steps, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    x = np.random.default_rng(0).normal(1.0, 1.0, (64, 3)).astype(np.float32)
    est = SVI(steps=steps, batch_size=16, lr=0.05)
    fit = ppgen.fit(model, {"x": x}, est, seed=0, runner=DDP(timeout_s=120),
                    checkpoint_dir=ckpt, checkpoint_every=10, resume=resume)
    if torch.distributed.get_rank() == 0:
        params = {k: v.tolist() for k, v in fit.params.items()}
        with open(out, "w") as f:
            json.dump({"loss": fit.history["loss"], "params": params,
                       "processes": fit.diagnostics["processes"]}, f)
"""


def _torchrun(run_script, tmp_path, n: int, name: str, steps: int, resume: bool = False) -> dict:
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{name}.json"
    args = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
    args += [str(script), str(out), str(tmp_path / f"ckpt_{name}"), str(steps), str(int(resume))]
    run_script(args)
    return json.loads(out.read_text())


def test_two_gloo_processes_give_the_one_process_fit_and_resume_with_one(run_script, tmp_path):
    one = _torchrun(run_script, tmp_path, 1, "one", 40)
    two = _torchrun(run_script, tmp_path, 2, "two", 40)
    assert (one["processes"], two["processes"]) == (1, 2)
    # each process has 8 of the 16 rows of every global batch; the averaged gradient is the
    # global batch's, so the steps agree up to the float rounding of split sums (losses ~300
    # nats: measured 6e-5)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    for k, v in one["params"].items():
        np.testing.assert_allclose(two["params"][k], v, rtol=1e-5, atol=1e-6)
    # 2 processes for 20 steps (rank 0 checkpoints), then 1 process resumes to 40
    _torchrun(run_script, tmp_path, 2, "half", 20)
    (tmp_path / "ckpt_rest").mkdir()
    (tmp_path / "ckpt_rest" / "checkpoint.pt").write_bytes(
        (tmp_path / "ckpt_half" / "checkpoint.pt").read_bytes()
    )
    rest = _torchrun(run_script, tmp_path, 1, "rest", 40, resume=True)
    np.testing.assert_allclose(rest["loss"], one["loss"], rtol=1e-5)


KILL = r"""
import os, warnings
import numpy as np, pyro, pyro.distributions as dist, torch
import ppgen
from ppgen.inference import DDP, SVI

warnings.simplefilter("ignore")

def model(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("d", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

def die(step, metrics):
    if step == 5 and torch.distributed.get_rank() == 1:
        os._exit(3)  # rank 1 is lost mid-run

if __name__ == "__main__":
    x, est = np.zeros(64, np.float32), SVI(steps=5000, batch_size=16)
    ppgen.fit(model, {"x": x}, est, runner=DDP(timeout_s=60), callbacks=[die])
"""


def test_a_lost_rank_takes_the_job_down_naming_it(tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([*cmd, str(script)], capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    # torchrun's agent stops the other rank (its all-reduce would fail within timeout_s) and
    # reports the lost one; no rank waits for 5000 steps
    assert proc.returncode != 0, out[-2000:]
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)\s*\n\s*exitcode\s*:\s*3", out), out[-3000:]


def model(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("d", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def test_ddp_outside_torchrun_or_without_a_divisible_batch_is_refused(monkeypatch):
    x = {"x": np.zeros(8, np.float32)}
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(EstimatorError, match="launched by torchrun"):
        ppgen.fit(model, x, SVI(steps=2, batch_size=4), runner=DDP())
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(EstimatorError, match="batch_size= a multiple of 2.*got 3"):
        ppgen.fit(model, x, SVI(steps=2, batch_size=3), runner=DDP())
    with pytest.raises(EstimatorError, match="does not average its gradients"):
        ppgen.fit(model, x, ppgen.inference.NUTS(2, 2), runner=DDP())
    assert sys.modules.get("torch.distributed") is None or not _initialised()


def _initialised() -> bool:
    import torch.distributed

    return torch.distributed.is_initialized()


def test_cli_fit_nproc_runs_the_command_under_torchrun(run_script, tmp_path):
    out = tmp_path / "run"
    args = ["-m", "ppgen", "fit", "vae", "--data", "digits_binary:split=test", "--steps", "10"]
    args += ["--batch-size", "64", "--nproc", "2", "--out", str(out), "--no-plots"]
    run_script(args)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["diagnostics"]["processes"] == 2  # written once, by rank 0
    assert manifest["estimator"]["settings"]["batch_size"] == 64
