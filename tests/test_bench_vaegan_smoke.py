"""benchmarks/bench_vaegan.py runs end to end at a tiny size and prints its three rows."""

from __future__ import annotations


def test_bench_vaegan_tiny(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_vaegan", "--steps", "5", "--seeds", "1"])
    rows = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()[-3:]}
    assert set(rows) == {"untrained", "VAE-GAN", "VAE"}, out
    assert all(v > 0 for v in rows.values()), out
