"""Smoke test: the NumPyro VAE benchmark runs end to end at tiny size (not a timing test)."""

from __future__ import annotations

import re


def test_bench_vae_numpyro_quick_runs(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_vae_numpyro", "--quick"])
    rows = re.findall(r"^\| (ppgen|raw) .*\| ([-\d.]+) \|$", out, re.M)
    assert len(rows) == 3, out
    # same program, guide, seed and batches: ppgen and the raw loops train identically
    assert len({loss for _, loss in rows}) == 1, rows
