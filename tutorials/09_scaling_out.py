"""Tutorial 9: one program, several processes -- data-parallel fits with ``runner=DDP()``.

Run from the repository root:
    python tutorials/09_scaling_out.py [--tiny] [--nproc N] [--steps N] [--out DIR]
(``--tiny`` takes well under a minute; the defaults a minute or two on 2 CPU cores).

The script starts itself again under ``torchrun --nproc_per_node N`` (what you would type:
``torchrun --nproc_per_node 2 tutorials/09_scaling_out.py``). Every process runs the same
``ppgen.fit`` calls with ``runner=DDP()``:

1. A VAE on binarised digits by SVI with ``batch_size=256``: each process takes its share of
   every global minibatch (128 rows each with 2 processes), the gradients and the loss are
   averaged over the processes (gloo on CPU, NCCL on GPUs), and each takes the same step. Rank
   0 writes the checkpoints and saves the run; any process could, they hold the same weights.
2. The zoo's GAN on the ring of 8 Gaussians by ``Adversarial`` (non-saturating loss): each
   process compares its share of the real batch with fakes from its own noise stream; the
   critic's and the generator's updates average their gradients over the processes. A GAN you
   write as a Pyro program (tutorial 6) runs the same way: DDP needs nothing from the model.

Back in the launching process, the saved VAE is loaded with ``ppgen.load`` (a plain
one-process object: DDP changes how a fit is computed, not what it is) and scored on the
held-out digits; the GAN's samples are scored by PacGAN's mode coverage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def vae():
    from ppgen.models.vae import VAE

    return VAE(x_dim=64, z_dim=8, hidden_features=(128,))


def worker(args: argparse.Namespace) -> None:
    """What every process runs (under torchrun)."""
    import torch

    import ppgen
    from ppgen.analysis.metrics import mode_coverage
    from ppgen.data.builtin import digits
    from ppgen.data.modes2d import mode_spec, ring8
    from ppgen.inference import DDP, SVI, Adversarial
    from ppgen.models.gan import GAN

    torch.set_num_threads(1)
    rank, out = int(os.environ["RANK"]), Path(args.out)
    runner = DDP(timeout_s=120)  # a lost process stops the others within two minutes

    train = digits("train", binarize=True)
    torch.manual_seed(0)  # the same start everywhere (DDP also broadcasts rank 0's weights)
    fit = ppgen.fit(
        vae(),
        train,
        SVI(steps=args.steps, batch_size=256, lr=3e-3),
        runner=runner,
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=max(args.steps // 2, 1),
        progress=False,
    )
    if rank == 0:
        fit.save(out / "vae")
        loss = fit.history["loss"]
        print(
            f"VAE: {fit.diagnostics['processes']} processes, loss {loss[0]:.0f} -> {loss[-1]:.0f}"
        )

    gan = ppgen.fit(
        GAN(2, z_dim=2, hidden_features=(64, 64)),
        {"x": ring8(4096, seed=0)},
        Adversarial(steps=args.gan_steps, batch_size=256, lr=1e-3),
        seed=0,
        runner=runner,
        progress=False,
    )
    if rank == 0:
        centres, sigma = mode_spec("ring8")
        s = gan.sample(1, data={"x": ring8(2000, seed=1)})["x"][0]
        cov = mode_coverage(s, centres, sigma).as_dict()
        hq = 100 * cov["high_quality_rate"]
        print(f"GAN: {cov['modes_covered']}/8 modes, {hq:.0f}% high-quality samples")
        (out / "gan.json").write_text(json.dumps(cov))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a quick run (the test suite's)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--gan-steps", type=int, default=None)
    parser.add_argument("--out", default="runs/tutorial_09")
    args = parser.parse_args(argv)
    args.steps = args.steps or (30 if args.tiny else 1000)
    args.gan_steps = args.gan_steps or (100 if args.tiny else 2000)
    if "RANK" in os.environ:  # a process started by torchrun
        worker(args)
        return {}

    import ppgen
    from ppgen.analysis.latent import elbo
    from ppgen.data.builtin import digits

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    script = [os.path.abspath(__file__), "--out", str(out), "--steps", str(args.steps)]
    script += ["--gan-steps", str(args.gan_steps)]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    print(" ".join(["torchrun", f"--nproc_per_node={args.nproc}", *script[:1]]))
    subprocess.run([*launch, f"--nproc_per_node={args.nproc}", *script], check=True, env=env)

    fit = ppgen.load(out / "vae", vae())
    test = digits("test", binarize=True)
    score = elbo(fit, test, num_particles=10)
    cov = json.loads((out / "gan.json").read_text())
    procs = fit.diagnostics["processes"]
    print(f"loaded VAE: ELBO {score:.2f} nats per held-out digit ({procs} processes)")
    return {"elbo": score, "processes": procs, "coverage": cov}


if __name__ == "__main__":
    main()
