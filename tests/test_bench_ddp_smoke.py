"""Smoke test: the DDP benchmark launches torchrun jobs end to end at tiny size (no timing)."""

from __future__ import annotations

import re


def test_bench_ddp_quick_prints_the_three_runs(run_script):
    out = run_script(["-m", "benchmarks.bench_ddp", "--quick"])
    rows = re.findall(r"^\| ([^|]+) \| (\d+) \| ([\d.]+) \| (\d+) \| ([\d.]+) \|$", out, re.M)
    assert [r[0].strip() for r in rows] == [
        "1 process, batch 256",
        "2 processes (gloo), global batch 256",
        "1 process, batch 128",
    ], out
    assert [int(r[1]) for r in rows] == [256, 128, 128] and all(float(r[2]) > 0 for r in rows)
