"""benchmarks/bench_gan_quality.py's ALI cases (BiGAN's and ALI's Normal encoder, with and
without the unary scores) run end to end at tiny size and print a scored row each (not a
quality test: 10 steps)."""

from __future__ import annotations

import re


def test_bench_gan_quality_ali_cases_smoke(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_gan_quality", "--smoke", "--cases", "ALI"])
    rows = re.findall(
        r"^\| (ring8|grid25) \| ppgen ALI[^|]*\| ([\d.]+) ± [\d.]+ \| ([\d.]+)", out, re.M
    )
    # ring and grid with BiGAN's encoder (joint critic, unary scores; the grid's unary case
    # also trained twice as long), the grid with ALI's Normal encoder (joint critic, unary)
    assert len(rows) == 7, out
    for bench, modes, hq in rows:
        assert 0 <= float(modes) <= {"ring8": 8, "grid25": 25}[bench] and 0 <= float(hq) <= 100
    assert "ALI paper (Dumoulin et al., Table 1)" in out  # the anchors beside ppgen's rows
