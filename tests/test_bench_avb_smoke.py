"""benchmarks/bench_avb.py runs end to end at a tiny size and prints its rows."""

from __future__ import annotations

import re


def test_bench_avb_smoke(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_avb", "--smoke"])
    rows = [line for line in out.splitlines() if line.startswith("banana")]
    assert len(rows) == 5, out  # NUTS + AVB + 3 SVI guides (the smoke run skips eight schools)
    assert "speed, eight schools: ppgen AVB" in out
    # lockstep: each ratio within its repetitions' range (one repetition in the smoke run)
    lock = out.split("speed in lockstep")[1].splitlines()[0]
    found = re.findall(r"(?:zoo model|plain program) ([\d.]+) \[([\d.]+), ([\d.]+)\]", lock)
    assert len(found) == 2, lock
    for ratio, lo, hi in found:
        assert 0 < float(lo) <= float(ratio) <= float(hi), lock
    amortized = [line for line in out.splitlines() if line.startswith(("AVB Impl", "SVI Amort"))]
    assert len(amortized) == 3, out  # two-mode encoders: AVB, diagonal and flow SVI
    for row in amortized:
        assert 0.0 <= float(row.split()[-2]) <= 0.5, row  # a share's deviation from 0.5
    for row in rows:
        if "NUTS" not in row:
            assert 0.0 <= float(row.split()[-1]) <= 1.0, row  # a c2st accuracy
