"""benchmarks/bench_ebm.py runs end to end at a tiny size and prints every row of its three
tables (speed ratios, test log-likelihoods, AIS errors)."""

from __future__ import annotations

import math


def test_bench_ebm_tiny(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_ebm", "--quick"])
    lines = out.splitlines()
    # speed: RBM PCD-1 vs hand, EBM vs hand, EBM vs torchebm (a ratio, or a row saying why it
    # was skipped: torchebm is no dependency of the project), NumPyro EBM vs raw JAX
    rows = [line for line in lines if " vs " in line]
    assert len(rows) == 4, out
    timed = [r for r in rows if "skipped" not in r]
    assert len(timed) >= 3, out
    for r in timed:
        a, b, ratio = (float(v) for v in r.split()[-3:])
        assert a > 0 and b > 0 and math.isfinite(ratio) and ratio > 0, r
        assert abs(ratio - a / b) < 0.01 + 0.01 * ratio, r
    # quality: 2 RBM sizes x {CD-1, CD-10, PCD-1}, the mixture, MADE and the VAE
    quality = [
        line for line in lines if line.startswith(("RBM(", "BernoulliMixture", "MADE", "VAE"))
    ]
    assert len(quality) == 9, out
    for r in quality:
        nats = float(r.split()[-2])
        # a digit has 64 binary pixels: between 0 and -64 log 2 nats for any sensible model
        assert -64 * math.log(2) < nats < 0, r
    assert sum("exact" in r for r in quality) == 3 and sum("AIS" in r for r in quality) == 3
    # AIS: one row per number of temperatures (--quick: 20 and 50)
    ais = [line.split() for line in lines if line.split()[:1] in (["20"], ["50"])]
    assert len(ais) == 2, out
    for r in ais:
        err_mean, err_sd, stderr, secs = (float(v) for v in r[1:])
        assert math.isfinite(err_mean) and abs(err_mean) < 5 and err_sd >= 0 and stderr > 0, r
