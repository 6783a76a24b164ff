"""benchmarks/bench_avb.py runs end to end at a tiny size and prints its ten rows."""

from __future__ import annotations


def test_bench_avb_smoke(run_script):
    out = run_script(["-m", "benchmarks.bench_avb", "--smoke"])
    rows = [line for line in out.splitlines() if line.startswith(("eight schools", "banana"))]
    assert len(rows) == 10, out  # 2 programs x (NUTS + AVB + 3 SVI guides)
    assert "speed, eight schools: ppgen AVB" in out
    for row in rows:
        if "NUTS" not in row:
            assert 0.0 <= float(row.split()[-1]) <= 1.0, row  # a c2st accuracy
