"""The round trip every example program makes (issue 17): ArviZ, LOO, save, load, same answers.

:func:`roundtrip` takes a fitted :class:`ppgen.Fit` and checks, in order,

1. ``fit.to_arviz()`` has a ``posterior`` group (and ``log_likelihood`` when ``loo``);
2. ``az.loo(idata)`` gives a finite ``elpd_loo`` with one pointwise entry per element of the
   log-likelihood variable (``loo=False`` skips it: a MAP fit's single draw, or a program
   without a likelihood);
3. ``fit.save(dir)`` then ``ppgen.load(dir, program, guide=guide)`` gives a fit with the same
   draws, params, ``predict(seed=...)`` arrays, ``log_likelihood()`` arrays (when the fit has
   a likelihood), ``sample_posterior(n, seed=...)`` draws, and the same ArviZ groups as saved
   in ``inference_data.nc`` (with ``compare_arviz=True`` also as the loaded fit rebuilds them
   with its own ``to_arviz()``: one more predictive and log-likelihood pass).

Every comparison is exact (``np.testing.assert_array_equal``): a loaded run must reproduce the
saved one bit for bit with the same seed, not merely to Monte Carlo error.

Usage from a test::

    from _roundtrip import roundtrip  # pytest puts tests/examples/ on sys.path (no __init__)

    fit = ppgen.fit(model, data, "svi", guide=guide)
    loaded, loo = roundtrip(fit, model, tmp_path, guide=guide)

``program`` is what ``ppgen.load`` gets: the same model code (a fresh instance of a
``PyroModule`` class with the same constructor arguments is fine), and ``guide`` the same
guide for a run fitted with your own guide (``ppgen.fit(..., guide=...)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

import ppgen

__all__ = ["roundtrip", "assert_same_arrays", "PARETO_K_WARNING"]

#: ArviZ's warning when some Pareto k of PSIS-LOO exceeds its threshold. The example tests fit
#: short chains (a few hundred draws) and tiny data sets where one influential point (a school
#: with a large effect, a baseball player with many hits) routinely crosses it: the estimate
#: is then less reliable, which is information, not a failure of ppgen. It is the one warning
#: the round trip tolerates; the returned ``ELPDData`` says whether it fired (``.warning``).
PARETO_K_WARNING = r"Estimated shape parameter of Pareto distribution is greater than"


def assert_same_arrays(
    expected: Mapping[str, Any], got: Mapping[str, Any], what: str = "arrays"
) -> None:
    """The same keys, and arrays equal bit for bit (shapes included), key by key."""
    assert sorted(got) == sorted(expected), f"{what}: keys {sorted(got)} != {sorted(expected)}"
    for k, v in expected.items():
        np.testing.assert_array_equal(
            np.asarray(got[k]), np.asarray(v), err_msg=f"{what}[{k!r}] differs"
        )


def _same_groups(expected: az.InferenceData, got: az.InferenceData, what: str) -> None:
    groups = [g for g in expected.groups() if g != "sample_stats"]  # stats: floats as saved
    assert sorted(got.groups()) == sorted(expected.groups()), what
    for g in groups:
        a, b = expected[g], got[g]
        assert sorted(a.data_vars) == sorted(b.data_vars), f"{what}: group {g}"
        for name in a.data_vars:
            np.testing.assert_array_equal(
                b[name].values, a[name].values, err_msg=f"{what}: {g}/{name} differs"
            )


def roundtrip(
    fit: ppgen.Fit,
    program: Any,
    tmp_path: str | Path,
    guide: Any = None,
    loo: bool = True,
    *,
    loo_var: str | None = None,
    seed: int = 1,
    predict_data: Mapping[str, Any] | None = None,
    compare_arviz: bool = False,
    static: Mapping[str, Any] | None = None,
) -> tuple[ppgen.Fit, az.ELPDData | None]:
    """to_arviz -> az.loo -> save -> load -> identical predictions; returns ``(loaded, loo)``.

    Arguments:
        fit: the fitted run.
        program: the program to load the run with (the model the fit was made of).
        tmp_path: a directory to save the run in (pytest's ``tmp_path``); the run goes to
            ``tmp_path / "run"``.
        guide: the user's guide, for a run fitted with ``guide=`` (``None`` otherwise).
        loo: compute PSIS-LOO with ``az.loo`` (needs a ``log_likelihood`` group and more than
            one draw); ``False`` for a MAP point or a program with no likelihood.
        loo_var: the log-likelihood variable for ``az.loo`` when there are several.
        seed: the seed of ``predict`` and ``sample_posterior`` on both fits.
        predict_data: covariates for ``predict`` (default: the training data).
        compare_arviz: also compare the loaded fit's own ``to_arviz()`` with the saved
            ``inference_data.nc`` (rebuilds the predictive groups once more: off by default,
            as ``predict``/``log_likelihood`` equality already covers what they are made of).
        static: the program's arguments that are neither arrays nor numbers (a function, a
            settings object), which a run records by name only: given to ``ppgen.load``.

    Returns:
        The loaded fit and the ``ELPDData`` of ``az.loo`` (``None`` without ``loo``).
    """
    idata = fit.to_arviz()
    assert "posterior" in idata.groups(), idata.groups()

    result = None
    if loo:
        assert "log_likelihood" in idata.groups(), idata.groups()
        with warnings.catch_warnings():  # every other warning still fails the test
            warnings.filterwarnings("ignore", message=PARETO_K_WARNING, category=UserWarning)
            result = az.loo(idata, var_name=loo_var, pointwise=True)
        assert np.isfinite(result.elpd_loo) and np.isfinite(result.se), result
        ll = idata.log_likelihood
        var = loo_var or next(iter(ll.data_vars))
        assert result.loo_i.size == int(np.prod(ll[var].shape[2:])), (result.loo_i.shape, var)
        assert result.n_samples == fit.num_chains * fit.num_draws

    run = Path(tmp_path) / "run"
    fit.save(run)
    loaded = ppgen.load(run, program, guide=guide, static=static)

    assert_same_arrays(fit.draws, loaded.draws, "draws")
    assert_same_arrays(fit.params, loaded.params, "params")
    assert_same_arrays(
        fit.predict(predict_data, seed=seed), loaded.predict(predict_data, seed=seed), "predict"
    )
    if fit.info.observed and fit.has_likelihood:
        assert_same_arrays(fit.log_likelihood(), loaded.log_likelihood(), "log_likelihood")
    if fit.draws:
        assert_same_arrays(
            fit.sample_posterior(7, seed=seed),
            loaded.sample_posterior(7, seed=seed),
            "sample_posterior",
        )

    saved = az.from_netcdf(str(run / "inference_data.nc"))
    _same_groups(idata, saved, "inference_data.nc vs fit.to_arviz()")
    if compare_arviz:
        _same_groups(idata, loaded.to_arviz(), "loaded.to_arviz() vs fit.to_arviz()")
    return loaded, result
