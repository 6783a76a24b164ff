"""benchmarks/bench_gan_digits.py runs end to end at a tiny size and prints its seven rows."""

from __future__ import annotations


def test_bench_gan_digits_smoke(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_gan_digits", "--smoke"])
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 8, out  # header + 7 models
    fcd = {r.split("|")[1].strip(): float(r.split("|")[3]) for r in rows[1:]}
    assert all(v >= 0 for v in fcd.values()), fcd
    # the training split is close to the held-out digits, noise is far
    assert fcd["training split (floor)"] < 5.0 < fcd["uniform noise (ceiling)"], fcd
