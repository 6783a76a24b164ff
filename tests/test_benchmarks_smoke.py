"""Smoke test: the core benchmark runs end to end at tiny sizes (not a timing test)."""

from __future__ import annotations


def test_bench_core_quick_runs(run_script):
    # the eight-schools and SVI cases cover every code path (both backends, NUTS and SVI);
    # the logistic case only repeats them on other data
    out = run_script(["-m", "benchmarks.bench_core", "--quick", "--only", "schools", "svi"])
    assert "| case | metric | better | ppgen | raw | ppgen/raw | within 5% |" in out
    assert "NUTS eight schools [numpyro]" in out
    assert "SVI AutoNormal schools [pyro]" in out
    assert "SVI AutoNormal schools, same plain-Pyro program [pyro]" in out
    # same program, seed and settings: ppgen's NUTS draws are the raw library's
    assert out.count("identical draws ppgen vs raw: True") == 2, out
