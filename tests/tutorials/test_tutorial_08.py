"""Tutorial 8 (energy models) runs end to end at tiny size and writes its pictures."""

from __future__ import annotations

import re


def test_tutorial_08_tiny(tmp_path, run_in_process):
    out = run_in_process(["tutorials/08_energy_models.py", "--tiny", "--out", str(tmp_path)])
    for name in ("CD-1", "PCD"):
        line = re.search(rf"RBM {name}\s*: log Z exact ([\d.]+), AIS ([\d.]+) \+- ([\d.]+)", out)
        exact, ais, se = map(float, line.groups())
        assert abs(ais - exact) < 0.1 + 4 * se, line.group(0)  # AIS agrees with enumeration
    test_ll = [float(v) for v in re.findall(r"test log-likelihood (-[\d.]+) nats", out)]
    # 200 steps of a 16-unit RBM: measured -22 / -23 nats per digit; 64 pixels at log 2 each
    # (a model knowing nothing) is -44
    assert len(test_ll) == 2 and all(-35 < v < -10 for v in test_ll), out
    assert "modes covered by Langevin samples" in out and "on the heavy mode" in out
    for name in ("rbm_samples", "ebm_ring"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
