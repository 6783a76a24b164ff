"""Smoke test of the GPU check (issue 15): ``benchmarks/gpu.sh`` runs the ``gpu`` tests and
``benchmarks/bench_gpu.py`` on a device; here the benchmark runs on the CPU at tiny size and
the script's shell is checked, so neither can rot while no GPU is lent (not a timing test)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_parses_and_runs_the_gpu_tests_and_the_benchmark():
    script = ROOT / "benchmarks" / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0  # valid shell
    text = script.read_text()
    assert "-m gpu tests" in text and "benchmarks.bench_gpu --device" in text


def test_bench_gpu_runs_every_case_on_the_cpu(run_in_process):
    out = run_in_process(["-m", "benchmarks.bench_gpu", "--device", "cpu", "--quick"])
    rows = re.findall(r"^\| (\w+) \| cpu \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert {r[0] for r in rows} == {"vae", "maf", "gan", "nuts"}, out
    assert all(float(v) > 0 for r in rows for v in r[1:]), out
