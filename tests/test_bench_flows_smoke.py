"""Smoke test: the flows benchmark runs end to end at tiny sizes (not a timing test)."""

from __future__ import annotations

import math
import re


def _tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Markdown tables as (the ``###`` heading above, header cells, rows of cells)."""
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    heading, previous = "", ""
    for line in text.splitlines():
        if line.startswith("### "):
            heading = line[4:]
        elif line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if previous.startswith("|"):
                tables[-1][2].append(cells)
            else:
                tables.append((heading, cells, []))
        previous = line
    return tables


def _table(tables, heading: str, first_column: str) -> list[list[str]]:
    return next(
        rows for h, head, rows in tables if h.startswith(heading) and head[0] == first_column
    )


def _number(cell: str) -> float:
    return float(re.match(r"[-+]?[\d.]+(e[-+]?\d+)?", cell).group(0))


def test_bench_flows_quick_runs_and_prints_finite_tables(run_in_process):
    stdout = run_in_process(["-m", "benchmarks.bench_flows", "--quick"])
    tables = _tables(stdout)
    toy = _table(tables, "2-D toy densities", "data")
    assert {(r[0], r[1]) for r in toy} == {("moons", "maf"), ("moons", "nice"), ("moons", "ffjord")}
    for row in toy:  # ppgen, hand, difference, true density, seconds
        values = [_number(c) for c in row[3:]]
        assert all(math.isfinite(v) for v in values), row
        assert values[0] < values[3] and values[1] < values[3], row  # below the true density
    # same init, same batches, ppgen's loss scale: the hand loop gives the same parameters
    found = re.search(r"parameter difference\| = (\S+), while .* up to (\S+)\.\n", stdout)
    diff, moved = float(found[1]), float(found[2])
    assert moved > 1e-3 and diff < 1e-3 * moved
    anchor = _table(tables, "Anchor", "path")
    assert len(anchor) == 4 and all(math.isfinite(_number(r[1])) for r in anchor)
    assert anchor[-1][0].startswith("hand loop, nflows MaskedAutoregressiveFlow")
    digits = _table(tables, "Digits", "model")
    assert len(digits) == 4
    for row in digits:  # bits/dim of a 17-level image: between 0 and a few bits
        assert all(0 < _number(c) < 10 for c in row[2:4]), row
    speed = _table(tables, "Speed", "path")
    assert [r[0] for r in speed][-1] == "ppgen.fit(MAFModel, MLE)"
    assert all(_number(r[1]) > 0 and math.isfinite(_number(r[2])) for r in speed)
    profile = _table(tables, "Speed", "where")
    assert profile[0][0].startswith("ppgen loop") and _number(profile[0][2]) > 0
    ffjord = _table(tables, "FFJORD", "data")
    assert ffjord[0][0] == "moons" and _number(ffjord[0][1]) > 0  # NFE per training step
    sampling = _table(tables, "Autoregressive", "model")
    assert len(sampling) == 7 and all(_number(r[3]) > 0 for r in sampling)
