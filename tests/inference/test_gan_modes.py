"""GANs on PacGAN's ring of 8: mode coverage and sample quality at test size.

The issue's bar: a GAN covers >= 7 of the 8 modes with >= 80% high-quality samples (within
3 sigma = 0.03 of the nearest mode), scored on 2,500 generated samples as PacGAN does
(:func:`ppgen.analysis.sample_quality.mode_coverage`): ``ns`` and ``wgan-gp`` on the NumPyro
program of ``benchmarks/bench_gan_quality.py`` with its settings (the faster engine on CPU; on
the zoo's Pyro ``GAN`` the ``ns`` settings gave 90.7%, 89.4%, 90.2% on seeds 0-2). The
settings were chosen on seeds 0, 1 and 2 (all pass; the numbers are in the comments); each
test runs one seed. Every run is deterministic given its seed. The control test shows that a
run too short to learn the ring does not meet the bar, so the assertions can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from benchmarks.bench_gan_quality import NS, WGAN, program
from ppgen.analysis.sample_quality import mode_coverage
from ppgen.data.modes2d import PACGAN_EVAL_SAMPLES, mode_spec, ring8
from ppgen.inference import Adversarial

MIN_MODES, MIN_HQ = 7, 0.80
X = ring8(10_000, seed=0)


def coverage(fit):
    """PacGAN's score of 2,500 generated samples (the zeros only size the draw)."""
    blank = np.zeros((PACGAN_EVAL_SAMPLES, 2), np.float32)
    samples = fit.sample(1, data={"x": blank})["x"][0]
    assert samples.shape == (PACGAN_EVAL_SAMPLES, 2)
    return mode_coverage(samples, *mode_spec("ring8"))


# Non-saturating: two time scales (the critic at twice the generator's rate) and an EMA of the
# generator's weights; generator and critic MLPs 2 -> 128 -> 128 -> out. Seeds 0, 1, 2 (data
# ring8(10_000, seed), fit seed): 8, 8, 8 modes, 91.6%, 89.8%, 91.9% high quality. Without the
# second time scale (lr_d = lr) 2000 steps reached 89.4%, 68.9%, 75.2%.


# WGAN-GP: the penalty weight of Gulrajani et al.'s toy-data code, 0.1 (with the default 10 the
# critic's Wasserstein estimate kept turning negative and the samples circled the ring: 0-3
# modes, < 1% high quality after 1000-2000 steps), three critic updates at twice the
# generator's rate. Seeds 0, 1, 2: 8, 8, 8 modes, 92.4%, 89.8%, 90.0% high quality (2500
# steps: 85.8%, 78.5%, 78.9%).


@pytest.mark.slow
@pytest.mark.parametrize("settings", [NS, WGAN], ids=["ns", "wgan-gp"])
def test_gan_covers_the_ring(settings):
    fit = ppgen.fit(program((128, 128)), {"x": X}, Adversarial(**settings), seed=0)
    r = coverage(fit)
    assert r.modes_covered >= MIN_MODES, r
    assert r.high_quality_rate >= MIN_HQ, r
    if settings["loss"] == "wgan-gp":
        assert set(fit.history) >= {"gp", "wasserstein"}


def test_a_short_run_does_not_reach_the_bar():
    """The control: 50 steps of the same GAN leave the samples far from the ring."""
    fit = ppgen.fit(program((128, 128)), {"x": X}, Adversarial(**{**NS, "steps": 50}), seed=0)
    r = coverage(fit)
    assert r.modes_covered < MIN_MODES or r.high_quality_rate < MIN_HQ, r
