"""Data-parallel SVI (``runner=DDP()``, gloo) against one process, in the same run.

Usage, from the repository root: python -m benchmarks.bench_ddp [--steps 300] [--batch 256]
[--hidden 256] [--quick]

The zoo ``VAE`` (64 -> hidden -> 8, Bernoulli) on the 1,797 binarised digits, SVI, global
batch B (default 256, hidden 256), launched with ``torchrun --standalone``: 1 process with
batch B, 2 processes with B/2 rows each, and 1 process with batch B/2 (the per-process work of
the 2-process run, without communication). Steps/s of rank 0 after the first 20 steps. On a
2-core machine 2 processes can at best double the throughput; the gap between "2 processes"
and "1 process, batch B/2" is the all-reduce and the two processes sharing the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = "--child"


def child(batch: int, steps: int, out: str, hidden: int = 256) -> None:
    """One process of a (possibly 1-process) torchrun job: fit, and rank 0 writes steps/s."""
    import warnings

    import numpy as np
    import torch
    import torch.distributed as dist

    import ppgen
    from ppgen.inference import DDP, SVI
    from ppgen.models import VAE

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    x = ppgen.data.load("digits_binary")["x"].astype(np.float32)
    t: dict[int, float] = {}

    def clock(step: int, metrics: dict) -> None:
        t[step] = time.perf_counter()

    torch.manual_seed(0)
    model = VAE(64, 8, hidden_features=(hidden,), likelihood="bernoulli")
    est = SVI(steps=steps, batch_size=batch, num_draws=1, lr=1e-3)
    ppgen.fit(model, {"x": x}, est, runner=DDP(), callbacks=[clock], seed=0)
    if dist.get_rank() == 0:
        rate = (steps - 20) / (t[steps] - t[20])
        with open(out, "w") as f:
            json.dump({"steps_per_s": rate, "processes": dist.get_world_size()}, f)


def launch(n: int, batch: int, steps: int, hidden: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.json")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={n}", "-m", "benchmarks.bench_ddp"]
        cmd += [CHILD, str(batch), str(steps), out, str(hidden)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
        with open(out) as f:
            return float(json.load(f)["steps_per_s"])


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="smoke size: 40 steps")
    ap.add_argument("--batch", type=int, default=256, help="global batch (even)")
    ap.add_argument("--hidden", type=int, default=256, help="VAE hidden width")
    ap.add_argument(
        CHILD, nargs=4, metavar=("BATCH", "STEPS", "OUT", "HIDDEN"), help=argparse.SUPPRESS
    )
    a = ap.parse_args(argv)
    if a.child:
        child(int(a.child[0]), int(a.child[1]), a.child[2], int(a.child[3]))
        return []
    from benchmarks._machine import machine

    steps = 40 if a.quick else a.steps
    print("\n".join(machine()), flush=True)
    big, half = a.batch, a.batch // 2
    print(f"\nVAE (hidden {a.hidden}) on digits, SVI, {steps} steps, steps/s of rank 0 after 20\n")
    print(f"| run | rows per process | steps/s | global rows/s | vs 1 process, batch {big} |")
    print("|---|---|---|---|---|")
    rows = []
    base = None
    for label, n, batch in (
        (f"1 process, batch {big}", 1, big),
        (f"2 processes (gloo), global batch {big}", 2, big),
        (f"1 process, batch {half}", 1, half),
    ):
        rate = launch(n, batch, steps, a.hidden)
        base = base or rate * batch
        rows.append({"run": label, "steps_per_s": rate, "rows_per_s": rate * batch})
        print(
            f"| {label} | {batch // n} | {rate:.1f} | {rate * batch:.0f} | "
            f"{rate * batch / base:.2f} |",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    main()
