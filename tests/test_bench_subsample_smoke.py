"""Smoke test: the subsampling benchmark runs end to end at tiny size (not a timing test)."""

from __future__ import annotations

import re


def test_bench_subsample_quick_prints_a_row_per_backend_and_size(run_script):
    out = run_script(["-m", "benchmarks.bench_subsample", "--quick"])
    rows = re.findall(
        r"^\| (pyro|numpyro) \| (\d+) \| ([\d.]+) \| (-?\d+) \| ([\d.]+) \|$", out, re.M
    )
    assert {(b, int(n)) for b, n, *_ in rows} == {(b, 2000) for b in ("pyro", "numpyro")}, out
    assert all(float(r[2]) > 0 for r in rows), out
