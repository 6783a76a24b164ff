"""Smoke test: the core benchmark runs end to end at tiny sizes (not a timing test)."""

from __future__ import annotations


def test_bench_core_quick_runs(run_in_process):
    # the eight-schools and SVI cases cover every code path (both backends, NUTS and SVI);
    # the logistic case only repeats them on other data
    out = run_in_process(["-m", "benchmarks.bench_core", "--quick", "--only", "schools", "svi"])
    assert "| case | metric | better | ppgen | raw | ppgen/raw | within 5% |" in out
    assert "NUTS eight schools [numpyro]" in out
    assert "SVI AutoNormal schools [pyro]" in out
    assert "SVI AutoNormal schools, same plain-Pyro program [pyro]" in out
    # same program, seed and settings: ppgen's NUTS draws are the raw library's
    assert out.count("identical draws ppgen vs raw: True") == 2, out


def test_bench_e2e_quick_runs(run_in_process):
    # the LDA case (Pyro's lda.py program, SVI with enumeration) end to end at tiny size; the
    # NUTS cases reuse bench_core's runners, smoke-tested above
    out = run_in_process(["-m", "benchmarks.bench_e2e", "--quick", "--only", "svi"])
    assert "| case | metric | ppgen | raw | ppgen/raw | <= 1.1 |" in out
    row = next(line for line in out.splitlines() if line.startswith("| SVI LDA"))
    assert float(row.split("|")[5]) > 0
