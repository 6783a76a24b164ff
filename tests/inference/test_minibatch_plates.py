"""Minibatching slices the axis the batch plate indexes (tracker issue 19, item 2).

Reference for every loss: the full-data loss at the same parameters. MLE with ``lr=1e-12``
keeps the parameters where they started (Adam moves each by about ``lr`` a step), so each
step's ``loss`` (the NLL of its batch, weighted ``N / B``) is one draw of the minibatch
estimator at fixed parameters.
"""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from ppgen.errors import EstimatorError
from ppgen.inference import MLE
from ppgen.inference._loop import Minibatcher

W, N = 3, 48  # features (words) x data points (documents)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, W)) * np.array([1.0, 3.0, 0.5])  # rows of unequal NLL: real variation
# float32 sums of N * W terms: relative error ~1e-6; a wrong weight is off by O(1)
RTOL = 1e-4


def _model(backend: str, layout: str, shapes: list | None = None):
    """x ~ Normal(mu, exp(log_s)) per feature, with the data plate first ``(N, W)`` (plate
    ``data`` at dim -2 around ``features``) or last ``(W, N)`` (LDA's words x documents:
    ``documents`` at dim -1 around ``words`` at dim -2). ``shapes`` records each batch's."""
    if backend == "pyro":
        import pyro
        import pyro.distributions as dist
        import torch

        plate, param, sample, exp = pyro.plate, pyro.param, pyro.sample, torch.exp
        zeros = torch.zeros
    else:
        import jax.numpy as jnp
        import numpyro as pyro
        import numpyro.distributions as dist

        plate, param, sample, exp = pyro.plate, pyro.param, pyro.sample, jnp.exp
        zeros = jnp.zeros

    def first(x=None):
        if shapes is not None:
            shapes.append(tuple(x.shape))
        mu = param("mu", zeros(W) + 0.3)
        log_s = param("log_s", zeros(W))
        with plate("data", x.shape[0], dim=-2), plate("features", W, dim=-1):
            sample("x", dist.Normal(mu, exp(log_s)), obs=x)

    def last(x=None):
        if shapes is not None:
            shapes.append(tuple(x.shape))
        mu = param("mu", zeros((W, 1)) + 0.3)
        log_s = param("log_s", zeros((W, 1)))
        with plate("documents", x.shape[1], dim=-1), plate("words", x.shape[0], dim=-2):
            sample("x", dist.Normal(mu, exp(log_s)), obs=x)

    return first if layout == "first" else last


def _data(layout: str, x: np.ndarray = X) -> dict:
    return {"x": x if layout == "first" else x.T.copy()}


def _losses(backend, layout, data, **est):
    model = _model(backend, layout)
    return ppgen.fit(model, data, MLE(lr=1e-12, **est), backend=backend, progress=False).history[
        "loss"
    ]


def _full(backend, layout, data):
    return _losses(backend, layout, data, steps=1, check_convergence=False)[0]


LAYOUTS = [("first", "data"), ("last", "documents")]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("layout,plate", LAYOUTS)
def test_minibatch_loss_is_an_unbiased_estimate_of_the_full_loss(backend, layout, plate):
    data = _data(layout)
    full = _full(backend, layout, data)
    # B divides N: each epoch's batches partition the data, so their mean is the full loss
    # exactly (up to float32 summation)
    exact = np.asarray(_losses(backend, layout, data, epochs=10, batch_size=16, batch_plate=plate))
    assert exact.shape == (30,)
    np.testing.assert_allclose(exact.reshape(10, 3).mean(1), full, rtol=RTOL)
    assert exact.std() > 0.05 * abs(full)  # single batches are not the full loss
    # B does not divide N (48 = 2 * 20 + 8): random batches of 20 and 8 rows, each weighted
    # N / B with its own B; the mean over many is within 4 standard errors of the full loss
    noisy = np.asarray(_losses(backend, layout, data, epochs=60, batch_size=20, batch_plate=plate))
    assert noisy.shape == (180,)
    se = noisy.std(ddof=1) / np.sqrt(noisy.size)
    assert abs(noisy.mean() - full) < 4 * se, (noisy.mean(), full, se)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_lda_layout_is_refused_without_batch_plate_and_sliced_along_documents_with_it(backend):
    data = _data("last")
    with pytest.raises(EstimatorError) as err:
        _losses(backend, "last", data, steps=2, batch_size=16)
    msg = str(err.value)
    for words in ("`words` (size 3", "`documents` (size 48", "batch_plate="):
        assert words in msg, msg
    shapes: list = []
    model = _model(backend, "last", shapes)
    est = MLE(lr=1e-12, epochs=2, batch_size=16, batch_plate="documents")
    fit = ppgen.fit(model, data, est, backend=backend, progress=False)
    # the documents axis (the last) is sliced; the words axis is whole
    assert (W, 16) in shapes and all(s in ((W, N), (W, 16)) for s in shapes), shapes
    losses = np.asarray(fit.history["loss"])
    np.testing.assert_allclose(
        losses.reshape(2, 3).mean(1), _full(backend, "last", data), rtol=RTOL
    )


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_batch_plate_that_indexes_no_data_axis_is_refused(backend):
    # plate `groups` (5 latents, MAP) holds no observed site and no array has an axis of 5:
    # weighting its sites N / B would subsample nothing (what `batch_plate=` used to do)
    if backend == "pyro":
        import pyro
        import pyro.distributions as dist

        plate, sample = pyro.plate, pyro.sample
    else:
        import numpyro as pyro
        import numpyro.distributions as dist

        plate, sample = pyro.plate, pyro.sample

    def model(x=None):
        with plate("groups", 5):
            g = sample("g", dist.Normal(0.0, 1.0))
        with plate("data", x.shape[0]):
            sample("x", dist.Normal(g.sum(), 1.0), obs=x)

    with pytest.raises(EstimatorError) as err:
        ppgen.fit(
            model,
            {"x": X[:, 0]},
            MLE(steps=2, batch_size=2, batch_plate="groups"),
            backend=backend,
            progress=False,
        )
    msg = str(err.value)
    assert "`groups` (size 5, dim -1) indexes no axis of the data" in msg, msg
    assert "{'x': (48,)}" in msg, msg


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_drop_last_uses_only_full_batches(backend):
    shapes: list = []
    model = _model(backend, "first", shapes)
    est = MLE(lr=1e-12, epochs=3, batch_size=20, batch_plate="data", drop_last=True)
    fit = ppgen.fit(model, _data("first"), est, backend=backend, progress=False)
    assert len(fit.history["loss"]) == 3 * (N // 20) == 6
    assert {s for s in shapes if s != (N, W)} == {(20, W)}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_the_partial_last_batch_is_weighted_by_its_own_size(backend):
    # every row the same: a batch of B rows weighted N / B has the full loss whatever B is,
    # so the 8-row last batch of each epoch (48 = 2 * 20 + 8) is weighted 48 / 8 = 6, not 48 / 20
    same = np.repeat(X[:1], N, axis=0)
    shapes: list = []
    model = _model(backend, "first", shapes)
    est = MLE(lr=1e-12, epochs=2, batch_size=20, batch_plate="data")
    fit = ppgen.fit(model, {"x": same}, est, backend=backend, progress=False)
    assert len(fit.history["loss"]) == 2 * 3
    assert {s for s in shapes if s != (N, W)} == {(20, W), (8, W)}
    np.testing.assert_allclose(fit.history["loss"], _full(backend, "first", {"x": same}), rtol=RTOL)


def test_minibatcher_slices_each_array_along_its_axis_and_resumes_exactly():
    x = np.arange(2 * 10).reshape(2, 10)
    c = np.arange(10.0)
    mb = Minibatcher({"x": x, "c": c, "k": np.ones(4)}, 10, 4, seed=1, axes={"x": 1, "c": 0})
    assert mb.steps_per_epoch == 3
    seen = [mb.next() for _ in range(3)]
    assert [b["x"].shape for b, _ in seen] == [(2, 4), (2, 4), (2, 2)]
    assert [s for _, s in seen] == [10 / 4, 10 / 4, 10 / 2]
    for b, _ in seen:
        np.testing.assert_array_equal(b["x"][0], b["c"])  # the same rows of both arrays
        assert b["k"].shape == (4,)  # not indexed: passes whole
    assert sorted(np.concatenate([b["c"] for b, _ in seen]).tolist()) == list(range(10))
    # drop_last: two full batches an epoch; resuming from a saved state repeats the stream
    mb = Minibatcher({"x": x}, 10, 4, seed=1, axes={"x": 1}, drop_last=True)
    assert mb.steps_per_epoch == 2
    mb.next()
    sd = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in mb.state_dict().items()}
    after = [mb.next()[0]["x"] for _ in range(5)]
    mb2 = Minibatcher({"x": x}, 10, 4, seed=99, axes={"x": 1}, drop_last=True)
    mb2.load_state_dict(sd)
    again = [mb2.next()[0]["x"] for _ in range(5)]
    assert all(a.shape == (2, 4) for a in after)
    for a, b in zip(after, again, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("world", [1, 2])
def test_torch_batches_are_the_rows_numpy_batches_draw_across_epochs_undo_and_resume(world):
    """Torch arrays are indexed by a torch copy of each shuffle (made once per shuffle): the
    rows every step draws are the numpy path's, for each process's share, over epochs, after
    an undone step (rewound onto the previous shuffle) and from a loaded state."""
    import torch

    x = np.arange(3 * 11, dtype=np.float32).reshape(11, 3)
    kw = dict(seed=3, axes={"x": 0, "y": 1}, shard=(world - 1, world))
    y = np.arange(2 * 11).reshape(2, 11)
    mb_np = Minibatcher({"x": x, "y": y}, 11, 4, **kw)
    mb_t = Minibatcher({"x": torch.as_tensor(x), "y": torch.as_tensor(y)}, 11, 4, **kw)

    def same(n: int) -> None:
        for _ in range(n):
            (a, sa), (b, sb) = mb_np.next(), mb_t.next()
            assert sa == sb
            np.testing.assert_array_equal(a["x"], b["x"].numpy())
            np.testing.assert_array_equal(a["y"], b["y"].numpy())

    same(7)  # three shuffles
    mb_np.undo(), mb_t.undo()  # the step that opened this shuffle was undone: the old one back
    same(5)
    sd = mb_np.state_dict()
    mb_t.load_state_dict({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in sd.items()})
    same(6)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_covariate_with_several_axes_of_the_plate_size_is_refused_by_name(backend):
    n = 6
    if backend == "pyro":
        import pyro
        import pyro.distributions as dist
        import torch

        def model(X=None, y=None):
            w = pyro.param("w", torch.zeros(n))
            with pyro.plate("data", y.shape[0]):
                pyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)
    else:
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        def model(X=None, y=None):
            w = numpyro.param("w", jnp.zeros(n))
            with numpyro.plate("data", y.shape[0]):
                numpyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)

    data = {"X": RNG.normal(size=(n, n)), "y": RNG.normal(size=n)}
    with pytest.raises(EstimatorError) as err:
        ppgen.fit(model, data, MLE(steps=2, batch_size=2), backend=backend, progress=False)
    msg = str(err.value)
    assert "data['X']" in msg and "(6, 6)" in msg, msg


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_nested_plates_are_chosen_only_when_nesting_and_layout_agree(backend):
    from ppgen.inference._loop import find_batch_plate
    from ppgen.program import Program

    if backend == "pyro":
        import pyro
        import pyro.distributions as dist

        plate, sample = pyro.plate, pyro.sample
    else:
        import numpyro as pyro
        import numpyro.distributions as dist

        plate, sample = pyro.plate, pyro.sample

    def vae_like(x=None):  # a per-datum latent in the data plate, around a pixel plate
        with plate("data", x.shape[0], dim=-2):
            z = sample("z", dist.Normal(0.0, 1.0))
            with plate("pixels", x.shape[1], dim=-1):
                sample("x", dist.Normal(z, 1.0), obs=x)

    def lda_like(x=None):  # words x documents; the documents plate alone holds their topics
        with plate("documents", x.shape[1], dim=-1):
            theta = sample("theta", dist.Normal(0.0, 1.0))
            with plate("words", x.shape[0], dim=-2):
                sample("x", dist.Normal(theta, 1.0), obs=x)

    def inspect(model, x):
        return Program(model, backend=backend).inspect({"x": x}), {"x": x}

    info, data = inspect(vae_like, X)
    assert find_batch_plate(info, data, None, 8).name == "data"
    for model, x in ((lda_like, X.T.copy()), (_model(backend, "first"), X)):
        info, data = inspect(model, x)
        with pytest.raises(EstimatorError, match="2 plates hold every observed site"):
            find_batch_plate(info, data, None, 8)
