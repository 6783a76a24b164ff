"""benchmarks/bench_gan.py runs end to end at a tiny size and prints its 14 ratio rows."""

from __future__ import annotations


def test_bench_gan_tiny(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_gan", "--steps", "25", "--reps", "1"])
    rows = [line for line in out.splitlines() if " vs " in line]
    # {ring MLP, digits DCGAN} x 2 losses x {program vs hand, program vs Pyro loop, declared
    # simulate_sites vs hand} on torch, 2 losses on JAX
    assert len(rows) == 14, out
    for row in rows:
        ratio = float(row.split()[-1])
        assert ratio > 0, row
