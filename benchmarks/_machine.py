"""The machine description every benchmark prints above its table."""

from __future__ import annotations

import datetime
import math
import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version

LIBS = ("torch", "pyro-ppl", "numpyro", "jax", "nflows", "arviz", "ppgen")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(libs: tuple[str, ...] = LIBS) -> list[str]:
    """Markdown bullet lines: date, cores, CPU, load average, Python and library versions."""
    try:
        load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"

    def ver(p: str) -> str:
        try:
            return f"{p} {version(p)}"
        except PackageNotFoundError:
            return f"{p} (not installed)"

    return [
        f"- date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}",
        f"- nproc: {os.cpu_count()}; CPU: {cpu_name()}; Python {platform.python_version()}; {load}",
        "- " + ", ".join(ver(p) for p in libs) + "; torch.set_num_threads(1)",
    ]


class Clock:
    """A ppgen callback (or a hand-loop hook) that times steps ``warm..end``."""

    def __init__(self, warm: int = 20):
        self.warm, self.a, self.b, self.n = warm, math.nan, math.nan, 0

    def __call__(self, step: int, metrics: object = None) -> None:
        if step == self.warm:
            self.a = time.perf_counter()
        self.b, self.n = time.perf_counter(), step

    @property
    def rate(self) -> float:
        return (self.n - self.warm) / (self.b - self.a)
