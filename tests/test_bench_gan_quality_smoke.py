"""benchmarks/bench_gan_quality.py runs end to end at a tiny size and prints its table."""

from __future__ import annotations


def test_bench_gan_quality_smoke(run_script):
    out = run_script(["-m", "benchmarks.bench_gan_quality", "--smoke"])
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith(("| ring8 ", "| grid25 "))
    ]
    ours = [r for r in rows if r[1].startswith("ppgen ")]
    assert [(r[0], r[1]) for r in ours] == [
        ("ring8", "ppgen ns"),
        ("ring8", "ppgen wgan-gp"),
        ("grid25", "ppgen ns"),
    ], out
    assert sum(r[1].startswith("PacGAN: ") for r in rows) == 6, out
    for bench, _, modes, hq, _, seconds in ours:
        assert 0 <= float(modes.split("±")[0]) <= (8 if bench == "ring8" else 25)
        assert 0 <= float(hq.split("±")[0]) <= 100
        assert float(seconds) > 0
    assert out.count("goal") == 3, out
