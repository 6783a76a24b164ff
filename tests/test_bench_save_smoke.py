"""Smoke test: the save benchmark runs end to end at tiny size (not a timing test)."""

from __future__ import annotations

import re


def test_bench_save_tiny_prints_a_finite_row_per_case(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_save", "--tiny", "--programs", "regression"])
    assert "| program | backend | draws | save s | raw write s | save/raw | run MB |" in out
    rows = re.findall(r"^\| (\w+) \| (\w+) \| 20 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", out, re.M)
    cases = {(program, backend) for program, backend, *_ in rows}
    assert cases == {(p, b) for p in ("regression",) for b in ("pyro", "numpyro")}, out
    assert all(float(v) > 0 for row in rows for v in row[2:4]), out
