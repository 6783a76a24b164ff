"""Checks a program runs before any work: data keys and values, observed sites, guide, kinds."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.errors import DataError, ProgramError, caller_stacklevel

if TYPE_CHECKING:
    from ppgen.backends import BackendOps, Site
    from ppgen.program import ProgramInfo

__all__ = [
    "bind_positional",
    "check_subsampling",
    "check_keys",
    "check_values",
    "check_observed",
    "check_guide",
    "check_kinds",
]


def check_keys(signature: inspect.Signature | None, data: Mapping[str, Any]) -> None:
    """Unknown or missing keyword arguments of a program with ``signature``, named."""
    if not isinstance(data, Mapping):
        raise DataError(
            f"`data` must be a dict mapping the program's argument names to arrays; "
            f"got {type(data).__name__}."
        )
    for k in data:
        if not isinstance(k, str):
            raise DataError(f"`data` keys must be strings (argument names); got {k!r}.")
    if signature is None:
        return
    params = signature.parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not accepts_any:
        unknown = [k for k in data if k not in names]
        if unknown:
            raise DataError(
                f"`data` has key(s) {unknown} that the program does not take; its arguments "
                f"are {names}. Rename the key(s) to match the model's keyword arguments."
            )
    missing = [n for n in names if params[n].default is inspect.Parameter.empty and n not in data]
    if missing:
        raise DataError(
            f"`data` is missing required argument(s) {missing} of the program. "
            f"Pass them in `data`, e.g. data={{{missing[0]!r}: ...}}."
        )


def bind_positional(
    signature: inspect.Signature | None, args: Any, data: Mapping[str, Any]
) -> Mapping[str, Any]:
    """``data`` with the positional ``args`` of a call ``program(*args, **data)`` put under the
    names of the parameters they fill, so that a program called positionally (``model(sequences,
    lengths)``) is fitted, saved and loaded like one called by name.

    Refused, naming what to do: ``args`` that is not a tuple or list, more values than the
    program has named positional parameters (``*args`` cannot be passed by name), a parameter
    given both in ``args`` and in ``data``, and positional-only parameters.

    Example:
        >>> def model(sequences, lengths, hidden=2, obs=None): ...
        >>> sorted(bind_positional(inspect.signature(model), ([0.0], [1]), {"hidden": 3}))
        ['hidden', 'lengths', 'sequences']
    """
    if not isinstance(args, tuple | list):
        raise DataError(
            f"`args` must be a tuple of the program's positional arguments; got "
            f"{type(args).__name__}. Pass e.g. args=(sequences, lengths)."
        )
    if not args or not isinstance(data, Mapping):  # check_keys names a `data` of the wrong type
        return data
    if signature is None:
        raise DataError(
            "`args` needs the program's signature to name the values, and this program has none "
            "Python can read. Pass the arguments by name in `data`."
        )
    params = list(signature.parameters.values())
    named = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(args) > len(named):
        star = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), None)
        why = (
            f"the rest would go to `*{star}`, which ppgen cannot pass by name"
            if star
            else "it takes no more"
        )
        raise DataError(
            f"`args` has {len(args)} value(s) but the program has {len(named)} named positional "
            f"parameter(s) ({[p.name for p in named]}): {why}. ppgen passes every argument by "
            "name (so that it can minibatch, save and reload it); wrap the program, e.g. "
            "`def program(sequences, lengths): return model(sequences, lengths)`."
        )
    names = [p.name for p in named[: len(args)]]
    only = [p.name for p in named[: len(args)] if p.kind is p.POSITIONAL_ONLY]
    if only:
        raise DataError(
            f"The program's parameter(s) {only} are positional-only (declared before `/`); "
            "ppgen passes every argument by name. Wrap the program: `def program(x, y): "
            "return model(x, y)`."
        )
    both = [n for n in names if n in data]
    if both:
        raise DataError(
            f"Argument(s) {both} are given twice: positionally in `args` and by name in `data`. "
            "Pass each once."
        )
    return {**dict(zip(names, args, strict=True)), **data}


def check_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """Convert array-likes to numpy and reject NaN/inf and non-numeric arrays.

    Python numbers pass unchanged (a scalar observation of a scalar site, or a setting); a
    torch tensor without readable values (``meta`` device, sparse) is refused naming its key.
    """
    out: dict[str, Any] = {}
    for k, v in data.items():
        if v is None or isinstance(v, bool | int | float | str):
            out[k] = v
            continue
        if hasattr(v, "detach"):
            a = _tensor_values(k, v)
        elif hasattr(v, "__array__") or isinstance(v, list | tuple):
            try:
                a = np.asarray(v)
            except ValueError as e:
                raise DataError(f"`data[{k!r}]` is not a rectangular array: {e}") from e
        else:
            out[k] = v
            continue
        if a.dtype.kind not in "biuf":
            raise DataError(
                f"`data[{k!r}]` must be numeric (bool, int or float); got dtype {a.dtype}. "
                "Encode categories as integer ids."
            )
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a)
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                what = "NaN" if np.isnan(a[first]) else "inf"
                raise DataError(
                    f"`data[{k!r}]` has {int(bad.sum())} non-finite value(s) ({what} first at "
                    f"index {first}). Drop or impute them before fitting, or mask the "
                    "likelihood with `poutine.mask` / `numpyro.handlers.mask`."
                )
        out[k] = a
    return out


def _tensor_values(key: str, v: Any) -> np.ndarray:
    """A torch tensor's values as numpy, or a DataError naming ``key`` (meta, sparse...)."""
    device = getattr(v, "device", None)
    if getattr(v, "is_meta", False) or getattr(device, "type", None) == "meta":
        raise DataError(
            f"`data[{key!r}]` is a torch tensor on the `meta` device (shape "
            f"{tuple(v.shape)}): it has a shape but no values. Pass the tensor holding the "
            "data (e.g. load it, or build it on device='cpu'), not a meta placeholder."
        )
    try:
        return v.detach().cpu().numpy()
    except (RuntimeError, TypeError, NotImplementedError) as e:
        raise DataError(
            f"`data[{key!r}]` is a {type(v).__name__} on `{device}` that cannot be read as an "
            f"array ({type(e).__name__}: {str(e).strip()}). Pass a dense numeric array (e.g. "
            "`x.to_dense()`, or `x.float()` for an unsupported dtype)."
        ) from e


def _check_shape(name: str, s: Site) -> None:
    full = s.batch_shape + s.event_shape
    shape = s.shape
    if len(shape) < len(s.event_shape) or shape[len(shape) - len(s.event_shape) :] != (
        s.event_shape
    ):
        raise DataError(
            f"Observed site `{name}`: the data's trailing shape must equal the "
            f"distribution's event shape {s.event_shape}; got data of shape {shape}. "
            "Reshape the data or use `.to_event(...)` on the distribution."
        )
    for p in s.plates:
        axis = len(shape) - s.event_dim + p.dim
        if axis < 0 or shape[axis] != p.size:
            got = shape[axis] if axis >= 0 else "nothing"
            raise DataError(
                f"Observed site `{name}` sits in plate `{p.name}` of size {p.size} (dim "
                f"{p.dim}), but its data has {got} along that dim (data shape {shape}). "
                f"Make the plate size match the data, e.g. plate({p.name!r}, len(x))."
            )
    try:
        np.broadcast_shapes(shape, full)
    except ValueError:
        raise DataError(
            f"Observed site `{name}`: data of shape {shape} does not broadcast with the "
            f"distribution's shape {full}."
        ) from None


def _check_present(name: str, s: Site, ops: BackendOps) -> None:
    """An observed site's value has entries (a ``factor``'s empty value aside), all finite."""
    if s.dist == "Unit" or 0 in s.event_shape:  # factor: an empty value by construction
        return
    if 0 in s.shape:
        raise DataError(
            f"Observed site `{name}` has no values: its data is empty (shape {s.shape}). Pass "
            f"at least one observation for `{name}` (an empty observation leaves only the prior "
            "to fit)."
        )
    val = np.asarray(ops.to_numpy(s.value))
    if val.dtype.kind == "f" and not np.isfinite(val).all():
        bad = ~np.isfinite(val)
        idx = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
        raise DataError(
            f"Observed site `{name}` gets {int(bad.sum())} non-finite value(s) ("
            f"{np.atleast_1d(val)[idx]} at index {idx}) from the program, although the data "
            "are finite: the program computes them (an overflow? a division by zero?). Fix "
            "the expression passed to `obs=`, or rescale the data."
        )


def check_observed(info: ProgramInfo, ops: BackendOps) -> None:
    """Each observed site's data: present and finite, against its plates, event shape and
    support."""
    for name in info.observed:
        s = info.sites[name]
        _check_present(name, s, ops)
        _check_shape(name, s)
        if s.density != "explicit":  # Implicit / Unnormalized: support is all of R^n
            continue
        bad = ops.support_violations(s)
        if bad.any() and _validation_off(s.fn):
            warnings.warn(
                f"Observed site `{name}` ({s.dist}) has {int(bad.sum())} value(s) outside its "
                f"support `{s.support}`, and its distribution has validation switched off "
                "(validate_args=False), so ppgen fits it as written: its log-density there is "
                "not a normalised likelihood"
                + (
                    " (for grey levels in [0, 1], ContinuousBernoulli is the normalised one)"
                    if "Bernoulli" in s.dist
                    else ""
                )
                + ".",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
        elif bad.any():
            idx = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
            val = np.atleast_1d(ops.to_numpy(s.value))
            try:
                shown = val[idx[: val.ndim]] if val.ndim else val
            except IndexError:
                shown = "?"
            raise DataError(
                f"Observed site `{name}` ({s.dist}) needs values in support `{s.support}`; "
                f"got {int(bad.sum())} value(s) outside it (e.g. {shown!s} at index {idx}). "
                "Fix the data or choose a likelihood whose support covers it"
                + (
                    " (grey levels in [0, 1]: binarise them, use ContinuousBernoulli, or pass "
                    "validate_args=False to fit the Bernoulli as written)."
                    if "Bernoulli" in s.dist
                    else "."
                )
            )


def _validation_off(fn: Any) -> bool:
    """Whether the user switched argument validation off for this distribution (Pyro or
    NumPyro; through ``Independent``/masked wrappers): ``validate_args=False``."""
    for _ in range(8):
        if getattr(fn, "_validate_args", None) is False:
            return True
        inner = getattr(fn, "base_dist", None)
        if inner is None:
            return False
        fn = inner
    return False


def check_kinds(info: ProgramInfo) -> None:
    """A program is explicit, implicit or energy: implicit and energy sites must not mix."""
    implicit, energy = info.sites_of_kind("implicit"), info.sites_of_kind("energy")
    if implicit and energy:
        raise ProgramError(
            f"The program mixes implicit observed site(s) {implicit} (Implicit: no density) "
            f"with energy site(s) {energy} (Unnormalized: density up to log Z). No estimator "
            "fits both at once; write one kind of observed site per program."
        )


def check_subsampling(sites: list[Site], which: str = "program") -> None:
    """Refuse, before any work, a program that subsamples a plate itself.

    ``plate("sequences", N, subsample_size=B)`` (or a program argument such as Pyro's
    ``batch_size`` that sets it) draws B of the N rows on every run: what is fitted is then
    only ever a random part of the data, so the log-likelihood, the predictions and the saved
    data of the fit would not be the data's, and MCMC would sample the wrong posterior. ppgen
    subsamples for the program instead (``batch_size=`` of the estimator), with the same
    ``N / B`` weighting; the error says so, with the numbers. ``which`` names where the plate
    is (``"program"`` or ``"guide"``: a guide that subsamples, as Pyro's ``lda.py`` does, makes
    the model subsample too).
    """
    plates = {p.name: p for s in sites for p in s.plates if p.subsample_size is not None}
    for plate in plates.values():
        b = plate.subsample_size
        inside = [s.name for s in sites if any(p.name == plate.name for p in s.plates)]
        raise DataError(
            f"Plate `{plate.name}` subsamples {b} of its {plate.size} rows inside the {which} "
            f"(`plate({plate.name!r}, {plate.size}, subsample_size={b})`, or a batch-size "
            f"argument that sets it; sites {inside[:5]}). ppgen needs the whole "
            "plate after the fit (log-likelihoods, predictions and a saved run's data hold "
            "every row) and MCMC would sample a random part of the data. Let ppgen subsample "
            f"instead: give the {which} the whole plate (drop `subsample_size`, or leave its "
            f"batch-size argument at None) and the estimator `batch_size={b}` (e.g. "
            f"`SVI(batch_size={b})`): it draws batches of {b} along `{plate.name}` and weights "
            f"the plate's sites by {plate.size}/{b}, as the plate did."
        )


def check_guide(info: ProgramInfo, guide_sites: list[Site]) -> None:
    """The guide samples exactly the model's latent sites, with the model's shapes."""
    gs = {s.name: s for s in guide_sites if s.kind != "param"}
    for name in info.latent:
        s = info.sites[name]
        if name not in gs:
            if s.enumerate in ("parallel", "sequential"):
                continue
            raise ProgramError(
                f"Latent site `{name}` of the model is missing from the guide. Add "
                f"`sample({name!r}, ...)` to the guide, or mark it for enumeration with "
                "infer={'enumerate': 'parallel'} and use elbo='enum'."
            )
        g = gs[name]
        if g.shape != s.shape:
            raise ProgramError(
                f"Site `{name}` has shape {s.shape} in the model but {g.shape} in the guide. "
                "Make the guide's distribution (and its plates) match the model's."
            )
    # auxiliary sites (an autoguide's joint `_AutoDiagonalNormal_latent`, marked
    # infer={"is_auxiliary": True}) are the guide's own: the model need not have them
    extra = [
        n
        for n, g in gs.items()
        if g.kind == "latent" and n not in info.sites and not g.infer.get("is_auxiliary")
    ]
    if extra:
        raise ProgramError(
            f"The guide samples site(s) {extra} that the model does not have. Remove them "
            "from the guide or give them the model's names."
        )
    for n in gs:
        if n in info.sites and info.sites[n].kind == "observed":
            raise ProgramError(
                f"The guide samples `{n}`, which is an observed site of the model. Guides "
                "sample latent sites only."
            )
