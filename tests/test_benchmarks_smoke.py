"""Smoke test: the core benchmark runs end to end at tiny sizes (not a timing test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_core_quick_runs():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_core", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| case | metric | better | ppgen | raw | ppgen/raw | within 5% |" in proc.stdout
    assert "NUTS eight schools [numpyro]" in proc.stdout
    assert "SVI AutoNormal schools [pyro]" in proc.stdout
    assert "SVI AutoNormal schools, same plain-Pyro program [pyro]" in proc.stdout
