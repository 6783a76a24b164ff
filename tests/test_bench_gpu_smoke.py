"""Smoke test of the GPU check (issue 15): ``benchmarks/gpu.sh`` runs the ``gpu`` tests and
``benchmarks/bench_gpu.py`` on a device; on this CPU machine both run with ``cpu`` at tiny
size, so the script cannot rot while no GPU is lent (not a timing test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_runs_on_the_cpu_and_prints_every_case():
    env = {**os.environ, "STEPS": "40", "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = re.findall(
        r"^\| (\w+) \| cpu \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", proc.stdout, re.M
    )
    assert {r[0] for r in rows} == {"vae", "maf", "gan", "nuts"}, proc.stdout
    assert all(float(v) > 0 for r in rows for v in r[1:]), proc.stdout
    assert re.search(r"\d+ skipped|\d+ passed", proc.stdout), proc.stdout  # the gpu tests ran
