"""Tutorials 2 (mixtures) and 3 (text models) run at tiny size and print sane numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


@pytest.fixture
def tutorial(run_in_process):
    def run(name: str, out: Path) -> str:
        return run_in_process([f"tutorials/{name}", "--tiny", "--out", str(out)])

    return run


def _png(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 1_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tutorial_02_chooses_three_components(tmp_path, tutorial):
    out = tutorial("02_mixtures.py", tmp_path)
    _png(tmp_path / "mixtures.png")
    # three well-separated unit blobs: LOO prefers K=3 and the DP occupies three components
    assert re.search(r"chosen K = (\d+)", out).group(1) == "3", out
    # 3 true clusters; truncation 6 may keep one tiny extra component above min_size
    assert int(re.search(r"occupied (\d+)", out).group(1)) in (3, 4), out


def test_tutorial_03_ngram_orders_and_topics(tmp_path, tutorial):
    out = tutorial("03_text_models.py", tmp_path)
    _png(tmp_path / "topics.png")
    ppl = {
        int(k): float(v) for k, v in re.findall(r"order (\d): held-out perplexity\s+([\d.]+)", out)
    }
    assert sorted(ppl) == [1, 2, 3, 4], out
    assert ppl[3] < ppl[1] and ppl[2] < ppl[1], ppl
    # ppgen.fit(method="exact") is the same closed form as NGramLM.fit
    exact = re.search(r"ppgen.fit exact \(order 2\): held-out perplexity\s+([\d.]+)", out)
    assert float(exact.group(1)) == ppl[2], out
    # the corpus has four clearly separated subjects: topics are coherent on average
    assert float(re.search(r"mean NPMI ([+-][\d.]+)", out).group(1)) > 0.2, out
