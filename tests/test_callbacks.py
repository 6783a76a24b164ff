"""Logging callbacks: what TensorBoard and CSVLogger write equals the fit's own history."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ppgen
from ppgen.callbacks import CSVLogger, TensorBoard
from ppgen.cli import main
from ppgen.errors import DataError
from ppgen.inference import SVI, Adversarial

X = np.random.default_rng(0).normal(1.0, 1.0, 20).astype(np.float32)


def model(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    with pyro.plate("data", 20):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_tensorboard_scalars_are_the_history(tmp_path):
    fit = ppgen.fit(model, {"x": X}, SVI(steps=6), callbacks=[TensorBoard(tmp_path, every=2)])
    got = _scalars(tmp_path)
    assert sorted(got) == ["loss"]
    assert [s for s, _ in got["loss"]] == [2, 4, 6]
    want = [fit.history["loss"][s - 1] for s in (2, 4, 6)]
    np.testing.assert_allclose([v for _, v in got["loss"]], want, rtol=1e-6)  # float32 events


def test_tensorboard_logs_every_adversarial_metric(tmp_path):
    import torch
    from torch import nn

    gen = nn.Linear(2, 2)

    def gan(x=None):
        pyro.module("gen", gen)
        with pyro.plate("data", 32):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", ppgen.distributions.Implicit(gen(z), event_dim=1), obs=x)

    torch.manual_seed(0)
    data = {"x": np.random.default_rng(1).normal(size=(32, 2)).astype(np.float32)}
    fit = ppgen.fit(gan, data, Adversarial(steps=3), callbacks=[TensorBoard(tmp_path, prefix="g/")])
    got = _scalars(tmp_path)
    assert sorted(got) == sorted(f"g/{k}" for k in fit.history)
    for k, v in fit.history.items():
        np.testing.assert_allclose([x for _, x in got[f"g/{k}"]], v, rtol=1e-6)


def test_tensorboard_logs_samples_of_the_finished_fit(tmp_path, monkeypatch):
    """samples=n: a figure per drawable observed site, at the last step, drawn from the
    finished fit with its own seed (the items TensorBoard plots are fit.sample_items')."""
    import torch
    from torch import nn

    from ppgen.analysis import plots

    gen = nn.Linear(2, 2)

    def gan(x=None):
        pyro.module("gen", gen)
        with pyro.plate("data", 32):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", ppgen.distributions.Implicit(gen(z), event_dim=1), obs=x)

    drawn = []
    real = plots.samples_figure
    monkeypatch.setattr(plots, "samples_figure", lambda items: drawn.append(items) or real(items))
    torch.manual_seed(0)
    data = {"x": np.random.default_rng(1).normal(size=(32, 2)).astype(np.float32)}
    fit = ppgen.fit(gan, data, Adversarial(steps=3), callbacks=[TensorBoard(tmp_path, samples=50)])
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["samples/x"]
    (event,) = acc.Images("samples/x")
    assert event.step == 3 and event.width > 100 and event.encoded_image_string[:4] == b"\x89PNG"
    (items,) = drawn
    np.testing.assert_array_equal(items, fit.sample_items(50, seed=fit.seed)["x"])
    # scalar items are neither images nor points: nothing is drawn, the scalars still are
    ppgen.fit(model, {"x": X}, SVI(steps=2), callbacks=[TensorBoard(tmp_path / "1d", samples=8)])
    acc = EventAccumulator(str(tmp_path / "1d"))
    acc.Reload()
    assert acc.Tags()["images"] == [] and acc.Tags()["scalars"] == ["loss"]
    with pytest.raises(ppgen.errors.EstimatorError, match="samples"):
        TensorBoard(tmp_path, samples=-1)


def test_csv_rows_are_the_history_exactly(tmp_path):
    path = tmp_path / "m.csv"
    fit = ppgen.fit(model, {"x": X}, SVI(steps=5), callbacks=[CSVLogger(path)])
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["step", "loss"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4, 5]
    assert [float(r[1]) for r in rows[1:]] == fit.history["loss"]  # repr round-trips


def test_csv_refuses_to_overwrite_and_appends_on_request(tmp_path):
    path = tmp_path / "m.csv"
    ppgen.fit(model, {"x": X}, SVI(steps=2), callbacks=[CSVLogger(path)])
    with pytest.raises(DataError, match="exists and is not empty.*append=True"):
        CSVLogger(path)
    fit = ppgen.fit(model, {"x": X}, SVI(steps=3), callbacks=[CSVLogger(path, append=True)])
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["step", "loss"] and len(rows) == 1 + 2 + 3
    assert [float(r[1]) for r in rows[3:]] == fit.history["loss"]


def test_logs_are_complete_when_a_callback_stops_early(tmp_path):
    path = tmp_path / "m.csv"
    logger = CSVLogger(path)
    fit = ppgen.fit(model, {"x": X}, SVI(steps=50), callbacks=[logger, lambda s, m: s == 4])
    assert logger._file is None  # closed by on_fit_end
    assert len(path.read_text().splitlines()) == 1 + 4 == 1 + len(fit.history["loss"])


def test_cli_log_writes_csv_and_tensorboard(tmp_path):
    out = tmp_path / "run"
    argv = ["fit", "eight_schools", "--method", "svi", "--steps", "5", "--no-plots"]
    argv += ["--out", str(out), "--log", "csv", "tensorboard"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    history = json.loads((out / "history.json").read_text())
    logs = tmp_path / "run-logs"
    rows = list(csv.reader((logs / "metrics.csv").read_text().splitlines()))
    assert [float(r[1]) for r in rows[1:]] == history["loss"]
    assert [v for _, v in _scalars(logs)["loss"]] == pytest.approx(history["loss"], rel=1e-6)


def test_samples_during_training_use_the_parameters_of_that_step(tmp_path):
    """samples_every=k: the loop hands on_samples the program run forward with the current
    parameters. An MLE of a location: the samples' mean is the location at that step."""
    import torch

    def loc_model(x=None):
        loc = pyro.param("loc", torch.tensor(-4.0))
        with pyro.plate("data", 50):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    class Probe(TensorBoard):
        def __init__(self):
            super().__init__(tmp_path, samples=4000, samples_every=3)
            self.locs, self.means = {}, {}

        def __call__(self, step, metrics):
            self.locs[step] = float(pyro.param("loc").detach())
            return super().__call__(step, metrics)

        def on_samples(self, step, items):
            assert items["x"].shape == (4000,)
            self.means[step] = float(items["x"].mean())
            super().on_samples(step, items)

    probe = Probe()
    data = {"x": np.full(50, 2.0, np.float32)}
    est = ppgen.inference.MLE(steps=9, lr=0.5, check_convergence=False)
    ppgen.fit(loc_model, data, est, callbacks=[probe])
    assert sorted(probe.means) == [3, 6, 9]
    for step, mean in probe.means.items():  # 4000 draws of N(loc, 1): se 0.016
        assert abs(mean - probe.locs[step]) < 0.08, (step, mean, probe.locs[step])
    assert probe.locs[3] < probe.locs[9]  # the parameter moved, and the samples with it


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_tensorboard_logs_samples_every_k_steps_on_both_backends(tmp_path, backend):
    from ppgen.models import GAN

    gan = GAN(2, z_dim=2, hidden_features=(8,), backend=backend)
    data = {"x": np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)}
    tb = TensorBoard(tmp_path, samples=32, samples_every=2)
    ppgen.fit(gan, data, Adversarial(steps=4), backend=backend, callbacks=[tb])
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    # the finished fit's samples go to a second event file (the first closed when training
    # ended); files of the same second may be read in either order
    steps = sorted(e.step for e in acc.Images("samples/x"))
    assert steps == [2, 4, 4]  # every 2 steps, then the finished fit's
