"""Tutorial 4 (VAE on digits) runs end to end at tiny size and writes its pictures."""

from __future__ import annotations


def test_tutorial_04_tiny(tmp_path, run_in_process):
    out = run_in_process(["tutorials/04_vae.py", "--tiny", "--out", str(tmp_path)])
    assert "IWAE(K=20)" in out and "path declared" in out
    for name in ("samples", "reconstructions", "traversal", "latent_space"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
