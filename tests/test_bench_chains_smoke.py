"""Smoke test: the parallel-chains benchmark runs end to end at tiny size (not a timing test)."""

from __future__ import annotations

import re


def test_bench_chains_quick_prints_every_case_and_parallel_equals_sequential(run_script):
    out = run_script(["-m", "benchmarks.bench_chains", "--quick"])
    rows = re.findall(
        r"^\| (pyro|numpyro) \| (\w+) \| ([\d.]+) \| ([\d.]+) \| (\S+) \|$", out, re.M
    )
    cases = {(b, m) for b, m, *_ in rows}
    assert cases == {
        ("pyro", "sequential"),
        ("pyro", "parallel"),
        ("numpyro", "sequential"),
        ("numpyro", "parallel"),
    }, out
    same = {(b, m): s for b, m, _, _, s in rows}
    assert same[("pyro", "parallel")] == "True", out  # Pyro: the same chains in the workers
