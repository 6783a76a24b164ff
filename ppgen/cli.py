"""The ``ppgen`` command line: fit a zoo or user model to a dataset, summarise saved runs."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import inspect
import os
import pkgutil
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import ppgen.models as _models_pkg
from ppgen.callbacks import CSVLogger, TensorBoard
from ppgen.capabilities import declares
from ppgen.data.files import dataset_options, load_data
from ppgen.errors import (
    CheckpointError,
    ConvergenceWarning,
    DataError,
    EstimatorError,
    PPGenError,
    ProgramError,
    SamplerWarning,
)
from ppgen.inference._base import resolve_method
from ppgen.inference.runners import DDP
from ppgen.models._cli import CLISpec

__all__ = [
    "main",
    "build_parser",
    "load_model",
    "load_data",
    "make_estimator",
    "summary_table",
    "load_run",
]

# Hamiltonian samplers get 2 chains (so r_hat is reported) of 300 warm-up + 500 kept draws:
# the README's eight-schools NUTS job then needs ~45 s of one CPU core on the Pyro backend
# (about 20 ms per transition with JIT). Giving --num-samples alone keeps the core's default
# of as many warm-up steps as draws.
MCMC_DEFAULTS = {"num_samples": 500, "num_warmup": 300, "num_chains": 2}


CLI_RECORD = "cli.json"
"""Beside a run fit by ``ppgen fit ZOO_NAME``: the zoo name and constructor arguments."""


@functools.cache
def zoo_specs() -> dict[str, tuple[type, CLISpec]]:
    """Every command-line name the zoo declares (``cli = (CLISpec(...), ...)`` on a class of
    :mod:`ppgen.models` or its modules), as ``{name: (class, spec)}`` in family order.

    Example:
        >>> specs = zoo_specs()
        >>> specs["vae"][1].method, specs["gmm"][1].data
        ('svi', 'blobs')
    """
    found: dict[str, tuple[type, CLISpec]] = {}
    for info in pkgutil.iter_modules(_models_pkg.__path__, _models_pkg.__name__ + "."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and isinstance(obj.__dict__.get("cli"), tuple):
                for spec in obj.__dict__["cli"]:
                    found.setdefault(spec.name, (obj, spec))
    return dict(sorted(found.items(), key=lambda kv: (kv[1][1].family, kv[0])))


def zoo_arguments(name: str, args: argparse.Namespace, data: Any = None) -> dict[str, Any]:
    """The constructor arguments of zoo model ``name`` for these command-line ``args``: its
    fixed variant, sizes read from ``data`` and ``--arg NAME=VALUE`` (``--K`` for mixtures).

    Example:
        >>> zoo_arguments("vae", argparse.Namespace(arg=["z_dim=4"]))
        {'z_dim': 4}
    """
    spec = zoo_specs()[name][1]
    pairs = list(getattr(args, "arg", None) or [])
    if "K" in spec.options and getattr(args, "K", None) is not None:
        pairs.insert(0, f"K={args.K}")  # the --K shorthand of the mixtures; --arg K= wins
    try:
        return spec.arguments(pairs, data)
    except ValueError as e:
        raise ProgramError(str(e)) from e


def load_model(spec: str, args: argparse.Namespace | None = None) -> Any:
    """A zoo model by name, or the object ``attr`` of module ``module`` for ``"module:attr"``.

    A class found through ``module:attr`` is instantiated with no arguments. The current
    directory is importable, so ``mymodels:model`` finds ``./mymodels.py``.

    Example:
        >>> load_model("eight_schools")
        EightSchools(centered=False)
    """
    specs = zoo_specs()
    if spec in specs:
        return specs[spec][0](**zoo_arguments(spec, args or argparse.Namespace()))
    if ":" not in spec:
        raise ProgramError(
            f"Unknown MODEL {spec!r}. Zoo models: {sorted(specs)}; or give 'module:attr' naming a "
            "model function or object in an importable module (e.g. mymodels:model)."
        )
    mod_name, _, attr = spec.partition(":")
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise ProgramError(f"MODEL {spec!r}: cannot import module `{mod_name}`: {e}") from e
    finally:
        if added:
            sys.path.remove(os.getcwd())
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ProgramError(f"MODEL {spec!r}: module `{mod_name}` has no attribute `{attr}`.")
        obj = getattr(obj, part)
    if inspect.isclass(obj):
        obj = obj()
    if not callable(obj) and not callable(getattr(obj, "model", None)):
        raise ProgramError(
            f"MODEL {spec!r} is a {type(obj).__name__}, not a model function or an object with "
            "a `.model(**data)` method."
        )
    return obj


def make_estimator(method: str, options: dict[str, Any]) -> Any:
    """The registered estimator ``method`` built from the command-line ``options`` given.

    Options left at ``None`` are not passed. An option the estimator does not take is an
    :class:`~ppgen.errors.EstimatorError` naming the flag; ``nuts``/``hmc`` default to
    2 chains of 300 warm-up steps and 500 draws (see ``MCMC_DEFAULTS``).

    Example:
        >>> est = make_estimator("nuts", {"num_samples": 200, "lr": None})
        >>> type(est).__name__, est.num_samples, est.num_chains
        ('NUTS', 200, 2)
    """
    cls = type(resolve_method(method))
    sig = inspect.signature(cls.__init__).parameters
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.values())
    kwargs = {k: v for k, v in options.items() if v is not None}
    if method.lower() in ("nuts", "hmc"):
        defaults = dict(MCMC_DEFAULTS)
        if "num_samples" in kwargs:
            defaults.pop("num_warmup")
        for k, v in defaults.items():
            if k in sig:
                kwargs.setdefault(k, v)
    for k in kwargs:
        if k not in sig and not open_kwargs:
            flag = "--" + k.replace("_", "-")
            raise EstimatorError(f"`{flag}` does not apply to method {method!r} ({cls.__name__}).")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise EstimatorError(f"method {method!r} rejects the options {sorted(kwargs)}: {e}") from e


# ---------------------------------------------------------------------- commands
PRINT_ROWS = 40
"""Rows of a summary printed to the terminal; the whole table is in the run's summary.csv."""


def _print_table(df: Any, where: str = "summary.csv") -> None:
    import pandas as pd

    with pd.option_context(
        "display.max_rows", None, "display.max_columns", None, "display.width", 200
    ):
        print(df.head(PRINT_ROWS).to_string())
    if len(df) > PRINT_ROWS:
        print(f"... {len(df) - PRINT_ROWS} more rows in {where}")


def point_table(values: dict[str, np.ndarray]) -> Any:
    """One ``estimate`` column, rows labelled like ``arviz.summary`` (``w[0, 1]``).

    For fits with a single draw (MLE/MAP), where ``az.summary`` would give only NaN spreads.

    Example:
        >>> point_table({"b": np.array(0.5), "w": np.array([1.0, 2.0])})
              estimate
        b          0.5
        w[0]       1.0
        w[1]       2.0
    """
    import pandas as pd

    rows = {}
    for name, value in values.items():
        a = np.asarray(value, dtype=float)
        for idx in np.ndindex(a.shape):
            label = f"{name}[{', '.join(map(str, idx))}]" if idx else name
            rows[label] = float(a[idx])
    return pd.DataFrame({"estimate": pd.Series(rows, dtype=float)})


def summary_table(fit: Any) -> Any:
    """``fit.summary()`` (ArviZ), or :func:`point_table` for single-draw and draw-less fits."""
    if fit.num_chains * fit.num_draws >= 2:
        return fit.summary()
    if fit.draws:
        return point_table({k: v[0, 0] for k, v in fit.draws.items()})
    return point_table(fit.params)


def log_callbacks(args: argparse.Namespace) -> list[Any]:
    """The loggers ``--log`` asks for, writing under ``--log-dir`` (default ``OUT-logs``)."""
    if not getattr(args, "log", None):
        return []
    log_dir = Path(args.log_dir or f"{str(args.out).rstrip('/')}-logs")
    out = []
    if "tensorboard" in args.log:
        out.append(TensorBoard(log_dir, samples=64))  # + samples of the fit, when drawable
    if "csv" in args.log:
        out.append(CSVLogger(log_dir / "metrics.csv"))  # refuses to overwrite, before the fit
    return out


def _fit(args: argparse.Namespace) -> int:
    import ppgen
    from ppgen.io import atomic_write, write_json
    from ppgen.persist import check_run_target

    check_run_target(args.out)  # before any work: a bad --out must not cost a whole fit
    parallel = bool(args.nproc and args.nproc > 1)
    if parallel and "RANK" not in os.environ:  # launch N copies of this command
        return _under_torchrun(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    specs = zoo_specs()
    spec = args.data or (specs[args.model][1].data if args.model in specs else None)
    if spec is None:
        raise DataError(f"`--data` is required for MODEL {args.model!r} (not a zoo model).")
    arguments = None
    if args.model in specs:  # the data first: a zoo model may take its sizes from it
        cls = specs[args.model][0]
        data = load_data(spec, cls, args.x_cols, args.y_col)
        arguments = zoo_arguments(args.model, args, data)
        model = cls(**arguments)
    else:
        model = load_model(args.model, args)
        data = load_data(spec, model, args.x_cols, args.y_col)
    method = args.method or (specs[args.model][1].method if args.model in specs else "nuts")
    options = {
        "steps": args.steps,
        "num_samples": args.num_samples,
        "num_warmup": args.num_warmup,
        "num_chains": args.num_chains,
        "lr": args.lr,
        "guide": args.guide,
        "elbo": args.elbo,
        "num_draws": args.num_draws,
        "batch_size": args.batch_size,
    }
    if args.model in specs:  # e.g. InfoGAN's code sites and recogniser for Adversarial
        options.update(specs[args.model][1].estimator_options(model, method))
    est = make_estimator(method, options)  # SVI/MAP pick elbo='enum' for enumerated sites
    progress = args.progress or sys.stderr.isatty()
    with _likelihood_hint(specs[args.model][1] if args.model in specs else None):
        fit = ppgen.fit(
            model,
            data,
            est,
            seed=args.seed,
            device=args.device,
            backend=args.backend,
            progress=progress,
            callbacks=log_callbacks(args),
            runner=DDP() if parallel else None,
        )
    if parallel:
        import torch.distributed as dist

        if dist.get_rank() != 0:
            return 0  # rank 0 writes the run
    out = Path(args.out)
    fit.save(str(out))
    if arguments is not None:  # how to build the model again: `ppgen sample/evaluate RUN`
        write_json(out / CLI_RECORD, {"model": args.model, "arguments": arguments})
    summary = summary_table(fit)
    atomic_write(out / "summary.csv", lambda tmp: summary.to_csv(tmp))
    if not args.no_plots:
        from ppgen.analysis import plots

        if fit.draws and fit.num_chains * fit.num_draws >= 2:  # one MAP draw: no distribution
            plots.plot_trace(fit, out / "trace.png")
            plots.plot_posterior(fit, out / "posterior.png")
        if fit.history.get("loss"):
            plots.plot_loss(fit, out / "loss.png")
    _print_table(summary)
    print(f"saved run to {out}", file=sys.stderr)
    return 0


_ARGV_ENV = "PPGEN_TORCHRUN_ARGV"


def _under_torchrun(args: argparse.Namespace) -> int:
    """``ppgen fit ... --nproc N``: the same command in N processes launched by torchrun
    (which sets RANK/WORLD_SIZE; each then fits with ``runner=DDP()``); its exit status."""
    import json
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={args.nproc}", "-m", "ppgen"]
    # the command travels in the environment: torchrun would read its flags (--log-dir...)
    env = {**os.environ, _ARGV_ENV: json.dumps(args.argv)}
    return subprocess.call(cmd, env=env)


@contextlib.contextmanager
def _likelihood_hint(spec: CLISpec | None) -> Iterator[None]:
    """Data outside a zoo model's likelihood (grey pixels for a Bernoulli): the error also says
    how to pick another likelihood on the command line."""
    try:
        yield
    except DataError as e:
        if spec is None or "likelihood" not in spec.options or "support" not in str(e):
            raise
        raise DataError(
            f"{e} On the command line: `--arg likelihood=NAME` (e.g. cbernoulli or gaussian for "
            "grey levels in [0, 1])."
        ) from e


def _summary(args: argparse.Namespace) -> int:
    import arviz as az

    from ppgen.io import read_json

    run = Path(args.dir)
    manifest, nc = run / "manifest.json", run / "inference_data.nc"
    if not manifest.is_file() or not nc.is_file():
        raise CheckpointError(
            f"`{run}` is not a ppgen run directory (expected manifest.json and "
            "inference_data.nc, as written by `ppgen fit --out DIR` or Fit.save)."
        )
    info = read_json(manifest)  # a CheckpointError naming the file when it is not JSON
    if not isinstance(info, dict) or info.get("format") != "ppgen-run":
        raise CheckpointError(f"`{run}` is not a ppgen run (its manifest has no ppgen format).")
    try:
        idata = az.from_netcdf(str(nc))
    except Exception as e:  # netCDF/HDF5 raise OSError, ValueError, KeyError... on a bad file
        raise CheckpointError(
            f"`{nc}` cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            "): the run is damaged. Its draws and parameters may still load with "
            f"`ppgen.load('{run}', model)`; otherwise fit it again (`ppgen fit ... --out DIR`)."
        ) from e
    est = info.get("estimator", {})
    print(f"# {info.get('program')} | {est.get('class')} | backend {info.get('backend')}")
    if "posterior" not in idata.groups():
        from safetensors.numpy import load_file

        params = run / "params.safetensors"
        try:
            values = load_file(str(params)) if params.is_file() else {}
        except Exception as e:  # safetensors raises its own error types on a bad header
            raise CheckpointError(
                f"`{params}` cannot be read ({type(e).__name__}: {e}): the run is damaged. Fit "
                "it again (`ppgen fit ... --out DIR`)."
            ) from e
        _print_table(point_table(values))
        return 0
    post = idata.posterior
    n = post.sizes.get("chain", 1) * post.sizes.get("draw", 1)
    if n < 2:
        table = point_table({k: v.values[0, 0] for k, v in post.data_vars.items()})
    else:
        table = az.summary(idata, kind="all" if post.sizes.get("chain", 1) > 1 else "stats")
    _print_table(table)
    return 0


def load_run(run: str | Path, model: str | None = None) -> Any:
    """The saved run at ``run`` as a :class:`~ppgen.result.Fit`, for ``ppgen evaluate``.

    ``model`` is a zoo name or ``module:attr`` (as ``ppgen fit MODEL``) building the fitted
    program. A run of ``ppgen fit ZOO_NAME`` loads by itself: the zoo name and constructor
    arguments (``--arg`` values, sizes read from the data) are recorded in its ``cli.json``.
    Otherwise, without ``model``, zoo models of the class the manifest names are tried with
    their default arguments; a run of any other program needs ``model``. A
    :class:`~ppgen.errors.CheckpointError` says what to do.
    """
    import ppgen
    from ppgen.io import read_json
    from ppgen.persist import is_run

    run = Path(run)
    if not is_run(run):
        raise CheckpointError(
            f"`{run}` is not a ppgen run directory (expected a manifest.json written by "
            "`ppgen fit --out DIR` or Fit.save)."
        )
    recorded = _recorded_model(run)
    if recorded is not None and model in (None, recorded[0]):
        name, arguments = recorded
        return ppgen.load(run, zoo_specs()[name][0](**arguments))
    if model is not None:
        return ppgen.load(run, load_model(model))
    program = str(read_json(run / "manifest.json").get("program", ""))
    errors = []
    for name, (cls, spec) in zoo_specs().items():
        if cls.__name__ != program.split(".")[0] or spec.sizes:
            continue
        try:
            return ppgen.load(run, cls(**zoo_arguments(name, argparse.Namespace())))
        except CheckpointError as e:
            errors.append(f"{name}: {e}")
    tried = f" (the zoo models of that class did not load: {'; '.join(errors)})" if errors else ""
    raise CheckpointError(
        f"`{run}` holds a fit of `{program}`{tried}. Pass --model MODEL, the zoo name or "
        "module:attr that builds the fitted model (with its constructor arguments)."
    )


def _recorded_model(run: Path) -> tuple[str, dict[str, Any]] | None:
    """The zoo name and constructor arguments ``ppgen fit`` recorded beside ``run``, checked:
    a zoo name, and only the arguments its :class:`CLISpec` declares, as plain JSON values."""
    from ppgen.io import read_json

    path = run / CLI_RECORD
    if not path.is_file():
        return None
    record = read_json(path)
    name = record.get("model") if isinstance(record, dict) else None
    arguments = record.get("arguments") if isinstance(record, dict) else None
    if name not in zoo_specs() or not isinstance(arguments, dict):
        raise CheckpointError(
            f"`{path}` does not name a zoo model and its arguments ({record!r}); pass --model."
        )
    spec = zoo_specs()[name][1]
    known = set(spec.fixed) | set(spec.sizes) | set(spec.options)
    out = {}
    for key, value in arguments.items():
        plain = isinstance(value, (int, float, str, bool)) or (
            isinstance(value, list) and all(isinstance(v, int) for v in value)
        )
        if key not in known or not plain:
            raise CheckpointError(
                f"`{path}`: argument {key}={value!r} is not one {name} declares ({sorted(known)})."
            )
        out[key] = tuple(value) if isinstance(value, list) else value
    return name, out


def _evaluate(args: argparse.Namespace) -> int:
    from ppgen.analysis.evaluate import evaluate
    from ppgen.data import DATASETS
    from ppgen.io import write_json

    spec = args.data
    if spec is not None and spec not in DATASETS and not Path(spec).is_file():
        if spec.partition(":")[0] not in DATASETS:
            raise DataError(
                f"`--data {spec!r}` is neither a built-in dataset ({sorted(DATASETS)}), one with "
                "options (NAME:key=value,...), nor an existing .csv or .npz file."
            )
        dataset_options(spec)  # a bad option is refused before the run is loaded
    run = Path(args.run)
    fit = load_run(run, args.model)
    result = evaluate(
        fit,
        args.data,
        num_samples=args.num_samples,
        modes=args.modes,
        seed=args.seed,
        iwae_k=args.iwae_k,
    )
    out = run / "evaluation.json"
    options = {"data": args.data, "modes": args.modes, "num_samples": args.num_samples}
    options["iwae_k"] = args.iwae_k
    write_json(out, {**result.as_dict(), "options": {**options, "seed": args.seed}})
    print(result.table())
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _sample(args: argparse.Namespace) -> int:
    from ppgen.analysis.plots import plot_samples
    from ppgen.io import atomic_write

    out = Path(args.out)
    if out.suffix not in (".npz", ".png", ".txt"):
        raise DataError(
            f"`--out {args.out}` must end in .npz (arrays), .png (a plot) or .txt (text models)."
        )
    if out.exists():
        raise DataError(f"`--out {args.out}` exists; ppgen does not overwrite it. Give a new path.")
    fit = load_run(args.run, args.model)
    if out.suffix == ".txt":
        if not declares(fit.program.obj, "sample_text"):
            raise DataError(
                f"`--out {args.out}`: {type(fit.program.obj).__name__} has no text form (a model "
                "declares one with a `sample_text(fit, n, seed)` method, as NGramLM does). "
                "Write .npz or .png."
            )
        texts = fit.program.obj.sample_text(fit, args.n, seed=args.seed)
        body = "".join(f"--- sample {i}\n{t}\n" for i, t in enumerate(texts))
        atomic_write(out, lambda tmp: Path(tmp).write_text(body, encoding="utf-8"))
        print(f"wrote {out} ({len(texts)} texts)", file=sys.stderr)
        return 0
    items = fit.sample_items(args.n, seed=args.seed)
    if out.suffix == ".npz":

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
                np.savez(f, **items)

        atomic_write(out, write)
    else:
        site = args.site or (next(iter(items)) if len(items) == 1 else None)
        if site not in items:
            raise DataError(
                f"`--site` must name one observed site to plot ({sorted(items)}); got {site!r}."
            )
        plot_samples(items[site], out)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in items.items())
    print(f"wrote {out} ({shapes})", file=sys.stderr)
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from ppgen.data import DATASETS

    for name, fn in DATASETS.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        print(f"{name:<16} {doc[0] if doc else ''}")
    return 0


def _models(args: argparse.Namespace) -> int:
    print(f"{'name':<24} {'family':<16} {'method':<12} {'data':<24} options / description")
    for name, (_, spec) in zoo_specs().items():
        opts = " ".join(f"--arg {k}=" for k in spec.options)
        line = f"{name:<24} {spec.family:<16} {spec.method:<12} {spec.data:<24} "
        print(line + "; ".join(x for x in (opts, spec.description) if x))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int; got {text}")
    return value


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be an int >= 2; got {text}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an int in [0, 2**32 - 1]; got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ppgen`` command."""
    from ppgen import __version__

    p = argparse.ArgumentParser(
        prog="ppgen",
        description="Fit Pyro/NumPyro programs with any estimator; save and summarise runs.",
    )
    p.add_argument("--version", action="version", version=f"ppgen {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = sub.add_parser(
        "fit",
        help="fit MODEL to data and save the run",
        description="Fit MODEL to --data with --method; write the run, summary.csv and plots.",
        epilog="example: ppgen fit eight_schools --data eight_schools --method nuts "
        "--out runs/schools",
    )
    zoo = ", ".join(zoo_specs())
    f.add_argument("model", metavar="MODEL", help=f"zoo name ({zoo}) or module:attr")
    f.add_argument(
        "--data",
        help="built-in dataset name (with options: NAME:key=value,..., e.g. "
        "digits_binary:split=test), file.csv or file.npz (default for zoo models: their usual "
        "dataset)",
    )
    f.add_argument(
        "--method",
        help="registered estimator name (default: the zoo model's own, see `ppgen models`; "
        "nuts for module:attr programs)",
    )
    f.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="run directory: new, empty, or a previous run (replaced); anything else is refused",
    )
    f.add_argument("--steps", type=int, help="optimisation steps (svi, mle)")
    f.add_argument(
        "--batch-size",
        type=_positive,
        help="minibatch size (svi, mle, ...); with --nproc, the global batch split across them",
    )
    f.add_argument(
        "--nproc",
        type=_positive,
        help="data-parallel processes: runs this command under torchrun with runner DDP "
        "(SVI/MLE of Pyro programs; needs --batch-size, a multiple of N)",
    )
    f.add_argument("--num-samples", type=int, help="draws per chain (nuts, hmc; default 500)")
    f.add_argument(
        "--num-warmup",
        type=int,
        help="warm-up steps per chain (default 300, or --num-samples when given)",
    )
    f.add_argument("--num-chains", type=int, help="chains (nuts, hmc; default 2)")
    f.add_argument("--lr", type=float, help="learning rate (svi, mle)")
    f.add_argument("--guide", help="autoguide name (svi), e.g. normal, mvn, delta")
    f.add_argument("--elbo", help="ELBO (svi): trace, meanfield, graph, enum, renyi, iwae")
    f.add_argument(
        "--num-draws", type=_positive, help="posterior draws kept from the fitted guide (svi)"
    )
    f.add_argument(
        "--K", type=_positive, help="mixture components (gmm, tmm, bmm; the model's default)"
    )
    f.add_argument(
        "--arg",
        metavar="NAME=VALUE",
        action="append",
        help="a zoo model's constructor option (repeatable), e.g. --arg z_dim=8 (ppgen models)",
    )
    f.add_argument(
        "--x-cols",
        type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
        metavar="A,B,...",
        help="CSV columns forming the matrix argument X/x",
    )
    f.add_argument("--y-col", metavar="NAME", help="CSV column of the target argument y")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.add_argument("--device", help="cpu (default), cuda or cuda:N")
    f.add_argument(
        "--backend",
        choices=("pyro", "numpyro"),
        help="backend for backend-neutral models (default pyro)",
    )
    f.add_argument("--threads", type=int, help="torch CPU threads")
    f.add_argument("--progress", action="store_true", help="progress bar even if not a TTY")
    f.add_argument("--no-plots", action="store_true", help="skip trace/posterior/loss PNGs")
    f.add_argument(
        "--log",
        choices=("tensorboard", "csv"),
        nargs="+",
        help="log every training metric (optimisation fits): TensorBoard event files and/or "
        "metrics.csv in --log-dir",
    )
    f.add_argument("--log-dir", metavar="DIR", help="where --log writes (default: OUT-logs)")
    f.set_defaults(func=_fit)

    s = sub.add_parser("summary", help="print the ArviZ summary of a saved run")
    s.add_argument("dir", metavar="DIR", help="a run directory written by `ppgen fit`")
    s.set_defaults(func=_summary)

    m = sub.add_parser(
        "sample",
        help="draw new data from a saved run: .npz arrays, a .png plot or .txt text",
        description="Draw N items from the saved run RUN (its observed sites, rows of the data "
        "plate) and write them as a .npz of arrays, a .png (image grid for image models, "
        "scatter for 2-D points) or, for text models, a .txt of N texts.",
        epilog="example: ppgen sample runs/gmm -n 500 --out gmm.png",
    )
    m.add_argument("run", metavar="RUN", help="a run directory written by `ppgen fit` or Fit.save")
    m.add_argument("-n", type=_positive, default=64, help="items to draw (default 64)")
    m.add_argument("--out", required=True, help="FILE.npz, .png or .txt (never overwritten)")
    m.add_argument("--model", help="zoo name or module:attr of the fitted program (non-zoo runs)")
    m.add_argument("--site", help="observed site to plot (when the program has several)")
    m.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    m.set_defaults(func=_sample)

    e = sub.add_parser(
        "evaluate",
        help="score a saved run on data; write evaluation.json",
        description="Score the saved run RUN with what applies to it (ppgen.evaluate): test "
        "log-likelihood per datum and WAIC/LOO for fits with a likelihood; MMD, mode coverage "
        "(ring8/grid25) and Frechet classifier distance (8x8 digits) for implicit fits. Prints "
        "the table and writes RUN/evaluation.json.",
        epilog="example: ppgen evaluate runs/gan --model mymodels:gan --data ring8",
    )
    e.add_argument("run", metavar="RUN", help="a run directory written by `ppgen fit` or Fit.save")
    e.add_argument(
        "--data",
        metavar="NAME|FILE",
        help="built-in dataset name (NAME:key=value,... for options, e.g. "
        "digits_binary:split=test), file.csv or file.npz (default: the run's training data)",
    )
    e.add_argument(
        "--model",
        metavar="MODEL",
        help="zoo name or module:attr building the fitted model (default: the zoo model and "
        "arguments the run's cli.json records, else the zoo model the run names)",
    )
    e.add_argument("--modes", choices=("ring8", "grid25"), help="mode benchmark for mode coverage")
    e.add_argument(
        "-n",
        "--num-samples",
        type=_at_least_two,
        default=2500,
        metavar="N",
        help="generated points for sample-based metrics (default 2500)",
    )
    e.add_argument(
        "--iwae-k",
        type=_positive,
        default=100,
        metavar="K",
        help="importance samples per datum of the IWAE bound (fits with a guide; default 100)",
    )
    e.add_argument(
        "--seed", type=_seed, default=0, help="seed of the samples and data subset (default 0)"
    )
    e.set_defaults(func=_evaluate)
    sub.add_parser("datasets", help="list built-in datasets").set_defaults(func=_datasets)
    sub.add_parser("models", help="list zoo model names").set_defaults(func=_models)
    return p


@contextlib.contextmanager
def _plain_warnings() -> Iterator[None]:
    """ppgen's own warnings (convergence, sampler diagnostics) printed as ``warning:
    <message>``, like errors: the file and line of the Python frame that triggered them mean
    nothing to a command-line user. (Only the format changes: filters and recorders such as
    ``warnings.catch_warnings(record=True)`` see the same warnings.)"""
    formatted = warnings.formatwarning

    def plain(message, category, filename, lineno, line=None):  # noqa: ANN001
        if issubclass(category, (ConvergenceWarning, SamplerWarning)):
            return f"warning: {message}\n"
        return formatted(message, category, filename, lineno, line)

    warnings.formatwarning = plain
    try:
        yield
    finally:
        warnings.formatwarning = formatted


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ppgen`` command; returns the exit status (2 for a user error).

    Errors raised by ppgen (unknown method or model, bad data, ...) are printed as
    ``error: <message>`` on stderr, without a traceback.

    Example:
        >>> main(["models"])  # doctest: +ELLIPSIS
        name                     family           method       data                     options...
        ...
        eight_schools            hierarchical     nuts         eight_schools            EightS...
        ...
        0
    """
    parser = build_parser()
    if argv is None and _ARGV_ENV in os.environ and "RANK" in os.environ:  # `fit --nproc`
        import json

        argv = json.loads(os.environ[_ARGV_ENV])
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for `fit --nproc`
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        with _plain_warnings():
            return args.func(args)
    except PPGenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
