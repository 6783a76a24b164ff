"""Tutorial 4 (VAE on digits) runs end to end at tiny size and writes its pictures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tutorial_04_tiny(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    res = subprocess.run(
        [sys.executable, str(ROOT / "tutorials" / "04_vae.py"), "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "IWAE(K=20)" in res.stdout and "engine direct" in res.stdout
    for name in ("samples", "reconstructions", "traversal", "latent_space"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
