"""Shared pytest configuration: one torch thread, seeded RNGs, a --device option."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("MPLBACKEND", "Agg")
# One persistent XLA compilation cache for the whole run, shared by the xdist workers and the
# scripts the suite runs in subprocesses (they inherit the environment): most NumPyro tests
# compile the same small programs again from fresh closures, and an eager NumPyro
# initialisation compiles hundreds of single operations (measured: a tiny enumerated-mixture
# NUTS fit takes 28 s cold, 8 s from the cache). The cache is keyed by the HLO, the compile
# options and the JAX version, so it never changes a result. No size limit (-1): with one,
# every cache write globs the directory and reads every entry's access-time file under a file
# lock shared by the workers, which grows with the cache (thousands of entries by the end of a
# run) and made a cold suite about twice as slow. Without the lock a worker can read an entry
# the other is still writing; JAX then warns and compiles it again (the warning is ignored in
# pyproject.toml: a recompile, never a wrong result).
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parent / ".cache" / "jax")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", "-1")


def _drop_orphaned_cache_entries(path: str) -> None:
    """Remove cache entries whose ``-atime`` companion is missing (a process killed between
    writing the two files leaves one; caches written with a size limit have them). With a
    size limit set, JAX's eviction sweep reads every entry's atime, so one orphan makes every
    later cache write fail with a warning, which this suite turns into an error
    (jax-ml/jax#39880). Kept for a ``JAX_COMPILATION_CACHE_MAX_SIZE`` set from outside. Run
    once, by the controlling process, before any worker compiles."""
    root = Path(path)
    if not root.is_dir():
        return
    for entry in root.glob("*-cache"):
        if not entry.with_name(entry.name[: -len("-cache")] + "-atime").exists():
            entry.unlink(missing_ok=True)


# without a size limit no atime files are written: every entry would look orphaned
if "PYTEST_XDIST_WORKER" not in os.environ and os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] != "-1":
    _drop_orphaned_cache_entries(os.environ["JAX_COMPILATION_CACHE_DIR"])

import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent

# With two threads a busy neighbour core slows torch 25-60x; tests run one thread each.
torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default=None,
        help="device for tests that move models: cpu | cuda | cuda:N. Tests marked `gpu` "
        "run only when it is given (`-m gpu --device cpu` checks them on the CPU)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--device") is not None:
        return
    skip_gpu = pytest.mark.skip(reason="needs --device (cuda, or cpu to check them there)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace["torch"] = torch
    doctest_namespace["np"] = np


@pytest.fixture
def device(request) -> str:
    return request.config.getoption("--device") or "cpu"


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state (torch, numpy, pyro)."""
    import pyro

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    np.random.seed(0)
    yield
    pyro.clear_param_store()


def run_python(args: list[str], *, cwd: Path | str = ROOT, env: dict | None = None) -> str:
    """Run ``python ARGS`` in a subprocess (one thread, warnings off) and return its stdout.

    No wall-clock limit: how long a script takes depends on the machine, and a test must not
    (CI's own time limit catches a hang). A non-zero exit fails with the end of stderr.
    """
    full = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "MPLBACKEND": "Agg",
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture
def run_script():
    """:func:`run_python` as a fixture, for tests that run tutorials and benchmarks."""
    return run_python


def run_main(args: list[str]) -> str:
    """Run ``python ARGS`` (``["-m", module, ...]`` or ``[script.py, ...]``) in this process,
    as ``__main__`` with ``sys.argv`` set, and return what it printed.

    The same run as :func:`run_python` without a new interpreter's imports (8-15 s of
    ``torch``, ``jax``, ``pyro``, ``arviz`` each on this project's CI machine), for the
    scripts that start no processes and leave no device settings of their own: warnings
    ignored as ``PYTHONWARNINGS=ignore`` would, matplotlib on Agg, and afterwards
    ``sys.argv``, the environment, torch's and numpy's global RNGs, torch's default dtype and
    thread count, and Pyro's parameter store as they were. A non-zero ``sys.exit`` fails.
    """
    import contextlib
    import io
    import runpy
    import warnings

    import matplotlib
    import pyro

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    saved_argv, saved_env = list(sys.argv), dict(os.environ)
    rng, np_rng = torch.get_rng_state(), np.random.get_state()
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    out = io.StringIO()
    try:
        matplotlib.use("Agg")
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.chdir(ROOT):
            warnings.simplefilter("ignore")
            try:
                if args[0] == "-m":
                    sys.argv = [args[1], *args[2:]]
                    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
                else:
                    sys.argv = [str(ROOT / args[0]), *args[1:]]
                    runpy.run_path(str(ROOT / args[0]), run_name="__main__")
            except SystemExit as e:
                assert e.code in (None, 0), f"exit {e.code}: " + out.getvalue()[-2000:]
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_rng_state(rng)
        np.random.set_state(np_rng)
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
        pyro.clear_param_store()
    return out.getvalue()


@pytest.fixture
def run_in_process():
    """:func:`run_main` as a fixture: a benchmark or tutorial run in the test's process."""
    return run_main
