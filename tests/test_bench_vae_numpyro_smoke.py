"""Smoke test: the NumPyro VAE benchmark runs end to end at tiny size (not a timing test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_vae_numpyro_quick_runs():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_vae_numpyro", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^\| (ppgen|raw) .*\| ([-\d.]+) \|$", proc.stdout, re.M)
    assert len(rows) == 3, proc.stdout
    # same program, guide, seed and batches: ppgen and the raw loops train identically
    assert len({loss for _, loss in rows}) == 1, rows
