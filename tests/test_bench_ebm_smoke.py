"""benchmarks/bench_ebm.py runs end to end at a tiny size and prints every row of its three
tables (speed ratios, test log-likelihoods, AIS errors)."""

from __future__ import annotations

import math


def test_bench_ebm_tiny(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_ebm", "--quick"])
    lines = out.splitlines()
    # speed, separate runs: RBM PCD-1 vs hand, EBM vs hand (twice: the gradient by a sum and
    # with the ones given), EBM vs torchebm (a ratio, or a row saying why it was skipped:
    # torchebm is no dependency of the project), NumPyro EBM vs raw JAX; then in lockstep:
    # RBM and the two EBM rows again
    rows = [line for line in lines if " vs " in line]
    assert len(rows) == 8, out
    paired = [r for r in rows[:5] if "skipped" not in r]
    assert len(paired) >= 4, out
    for r in paired:  # name, steps/s of each, the median paired ratio, [lowest, highest]
        a, b, ratio = (float(v) for v in r.split()[-5:-2])
        lo, hi = (float(v) for v in r.split("[")[1].rstrip("]").split(","))
        assert a > 0 and b > 0 and math.isfinite(ratio) and ratio > 0, r
        # --quick runs one repetition: the paired ratio is the ratio of the rates
        assert abs(ratio - a / b) < 0.01 + 0.01 * ratio and lo <= ratio <= hi, r
    for r in rows[5:]:
        ratio = float(r.split("[")[0].split()[-1])
        lo, hi = (float(v) for v in r.split("[")[1].rstrip("]").split(","))
        assert math.isfinite(ratio) and 0 < lo <= ratio <= hi, r
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


def test_bench_ebm_mnist_part_on_stand_in_files(run_in_process, tmp_path):
    """Part 4 (``--mnist PATH``, never run in CI on the real digits) reads LeCun's gzipped IDX
    files from a folder, trains, estimates log Z by AIS and prints one row beside S&M's -86.3."""
    import gzip

    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("t10k", 60)):
        images = (rng.random((n, 28, 28)) < 0.2).astype(np.uint8) * 255
        digits = rng.integers(0, 10, n).astype(np.uint8)
        for kind, a in (("images-idx3", images), ("labels-idx1", digits)):
            head = bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">i4").tobytes()
            (tmp_path / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(head + a.tobytes()))
    out = run_in_process(["-m", "benchmarks.bench_ebm", "--quick", "--mnist", str(tmp_path)])
    assert "300 train / 60 test digits" in out, out
    rows = [line.split() for line in out.splitlines() if line.startswith("RBM(784, 20) CD-2")]
    assert len(rows) == 1, out
    nats, anchor = float(rows[0][-3]), float(rows[0][-2])
    # 784 binary pixels: between -784 log 2 and 0 nats for any sensible model
    assert -784 * math.log(2) < nats < 0 and anchor == -86.3, rows
    assert "bench_ebm --quick --mnist" in out  # the command line is recorded
