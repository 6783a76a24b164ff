"""Tutorials 2 (mixtures) and 3 (text models) run at tiny size and print sane numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(name: str, out: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tutorials" / name), "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        # one thread: the same floating-point reductions (and answers) on every machine
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def _png(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 1_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tutorial_02_chooses_three_components(tmp_path):
    out = _run("02_mixtures.py", tmp_path)
    _png(tmp_path / "mixtures.png")
    # three well-separated unit blobs: LOO prefers K=3 and the DP occupies three components
    assert re.search(r"chosen K = (\d+)", out).group(1) == "3", out
    # 3 true clusters; truncation 6 may keep one tiny extra component above min_size
    assert int(re.search(r"occupied (\d+)", out).group(1)) in (3, 4), out


def test_tutorial_03_ngram_orders_and_topics(tmp_path):
    out = _run("03_text_models.py", tmp_path)
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
