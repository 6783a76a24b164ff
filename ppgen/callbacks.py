"""Logging callbacks for the shared training loop: TensorBoard scalars and a CSV of every metric.

A callback is any ``cb(step, metrics)`` passed to ``ppgen.fit(..., callbacks=[...])``; it is
called after each optimisation step with every metric the estimator reports (``loss``;
``loss_d``, ``loss_g``, ``gp``... for adversarial fits). A callback object may also define
``on_fit_end()``, which the loop calls once when training ends (finished, early-stopped,
interrupted or failed), so files are complete when ``fit`` returns, and ``on_fit(fit)``, called
with the finished :class:`~ppgen.result.Fit` (e.g. to log samples drawn from it).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ppgen.errors import DataError, check_int

__all__ = ["TensorBoard", "CSVLogger"]


class TensorBoard:
    """Write every metric as a TensorBoard scalar (``torch.utils.tensorboard``), every
    ``every`` steps, under tag ``prefix + name`` (e.g. ``loss``, ``loss_d``, ``loss_g``).

    View with ``tensorboard --logdir LOGDIR``. The event file is flushed and closed when the
    fit ends. With ``samples=n`` (generative models), ``n`` items drawn from the finished fit
    (:meth:`~ppgen.result.Fit.sample_items`) are logged as a figure per observed site, at the
    last step: an image grid for images (``(C, H, W)``, ``(H, W)`` or a square number of
    pixels) and a scatter plot for 2-D points (:func:`ppgen.analysis.plots.samples_figure`);
    other sites, and fits that cannot sample, are skipped. With ``samples_every=k`` too, every
    ``k`` steps the loop hands :meth:`on_samples` ``n`` items of the program run forward with
    the parameters of that step (latents from their prior; Pyro estimators, and NumPyro's SVI,
    MLE and Adversarial).

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen, tempfile
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("obs", 5):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> logdir = tempfile.mkdtemp()
        >>> fit = ppgen.fit(model, {"x": np.zeros(5)}, ppgen.inference.SVI(steps=4),
        ...                 callbacks=[TensorBoard(logdir)])
        >>> len(list(Path(logdir).glob("events.out.tfevents.*")))
        1
    """

    def __init__(
        self,
        logdir: str | os.PathLike,
        *,
        every: int = 1,
        prefix: str = "",
        samples: int = 0,
        samples_every: int = 0,
    ) -> None:
        self.logdir = Path(logdir)
        self.every = check_int("every", every, 1)
        self.prefix = str(prefix)
        self.samples = check_int("samples", samples, 0)
        self.samples_every = check_int("samples_every", samples_every, 0)
        self._writer: Any = None
        self._step = 0

    def _open(self) -> Any:
        if self._writer is None:
            # imported on first use: TensorBoard's import is slow and most fits never log
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.logdir))
        return self._writer

    def __call__(self, step: int, metrics: Mapping[str, Any]) -> bool:
        self._step = step
        if step % self.every:
            return False
        writer = self._open()
        for name, value in metrics.items():
            writer.add_scalar(self.prefix + name, float(value), step)
        return False

    def on_samples(self, step: int, items: Mapping[str, Any]) -> None:
        """Log a figure of each drawable site's ``items`` (``(n, *item_shape)``) at ``step``."""
        from ppgen.analysis.plots import samples_figure

        for site, values in items.items():
            try:
                figure = samples_figure(values)
            except ValueError:  # neither images nor 2-D points
                continue
            self._open().add_figure(f"{self.prefix}samples/{site}", figure, step)

    def on_fit(self, fit: Any) -> None:
        """Log ``samples`` items of each drawable observed site of the finished ``fit``."""
        if self.samples and fit.can_sample:
            self.on_samples(self._step, fit.sample_items(self.samples, seed=fit.seed))
            self.on_fit_end()

    def on_fit_end(self) -> None:
        """Flush and close the event file (a later fit with this callback opens a new one)."""
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


class CSVLogger:
    """Append ``step`` and every metric to a CSV file, one row every ``every`` steps.

    The columns are ``step`` and the metrics of the first logged step; the file is written row
    by row (flushed each row), so it can be read while the fit runs. An existing non-empty file
    is refused before any work unless ``append=True`` (e.g. when resuming a fit); appending
    checks that its header matches.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen, tempfile
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("obs", 5):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> path = Path(tempfile.mkdtemp()) / "log.csv"
        >>> fit = ppgen.fit(model, {"x": np.zeros(5)}, ppgen.inference.SVI(steps=3),
        ...                 callbacks=[CSVLogger(path)])
        >>> path.read_text().splitlines()[0], len(path.read_text().splitlines())
        ('step,loss', 4)
    """

    def __init__(self, path: str | os.PathLike, *, every: int = 1, append: bool = False) -> None:
        self.path = Path(path)
        self.every = check_int("every", every, 1)
        self.append = bool(append)
        if self.path.is_dir():
            raise DataError(f"CSVLogger `path={str(self.path)!r}` is a directory; give a file.")
        if not self.append and self.path.exists() and self.path.stat().st_size > 0:
            raise DataError(
                f"CSVLogger `path={str(self.path)!r}` exists and is not empty; ppgen does not "
                "overwrite it. Give a new path, or pass `append=True` to add rows to it (e.g. "
                "when resuming the fit that wrote it)."
            )
        self._file: IO[str] | None = None
        self._writer: Any = None
        self._columns: list[str] | None = None

    def _open(self, columns: list[str]) -> None:
        existing = None
        if self.append and self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                existing = next(csv.reader(f), None)
            if existing != columns:
                raise DataError(
                    f"CSVLogger: `{self.path}` has columns {existing}, but this fit logs "
                    f"{columns}; append to a log of the same estimator, or give a new path."
                )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a" if existing else "w", newline="")
        self._writer = csv.writer(self._file)
        if existing is None:
            self._writer.writerow(columns)
        self._columns = columns

    def __call__(self, step: int, metrics: Mapping[str, Any]) -> bool:
        if step % self.every:
            return False
        if self._writer is None:
            self._open(["step", *metrics])
        cols = self._columns or []
        row = [repr(float(metrics[c])) if c in metrics else "nan" for c in cols[1:]]
        self._writer.writerow([step, *row])
        assert self._file is not None
        self._file.flush()
        return False

    def on_fit_end(self) -> None:
        """Close the file (a later fit with this callback appends to it)."""
        if self._file is not None:
            self._file.close()
            self._file, self._writer = None, None
            self.append = True
