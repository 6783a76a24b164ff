"""Smoke test: the amortised-LDA benchmark runs end to end at tiny sizes (not a timing test)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_lda_quick_numbers_are_finite(capsys):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import bench_lda

    out = bench_lda.main(["--quick"])
    tp = out["throughput"]
    assert set(tp) == {"ratio", "ppgen_docs_s", "raw_docs_s"}
    assert all(math.isfinite(v) and v > 0 for v in tp.values())
    assert [sorted(r) for r in out["scaling"]] == [
        ["docs_s", "overlap", "ppl", "tv_max", "tv_mean", "wall"]
    ] * 2
    for row in out["scaling"]:
        assert all(math.isfinite(v) for v in row.values())
        assert 0.0 <= row["tv_mean"] <= row["tv_max"] <= 1.0 and row["ppl"] > 1.0
    text = capsys.readouterr().out
    assert bench_lda.THROUGHPUT_HEADER in text and bench_lda.SCALING_HEADER in text
