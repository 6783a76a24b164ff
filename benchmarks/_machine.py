"""The machine description every benchmark prints above its table."""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
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


def step_rate(step: Callable[[], object], steps: int, warm: int = 20) -> float:
    """Steps/s of a hand loop's ``step`` (one call, one step) over steps ``warm..steps``."""
    for i in range(steps):
        if i == warm:
            t = time.perf_counter()
        step()
    return (steps - warm) / (time.perf_counter() - t)


class Lockstep:
    """A ppgen callback that runs one step of a baseline after each ppgen step and times
    both: ppgen's step-to-step interval (the baseline's step taken out) and the baseline's
    step. Alternating step by step, both run under the same machine state (a VM whose speed
    drifts by 10-20 % between runs seconds apart moves both alike), with each other's work
    between their steps. ``ratio``: the median baseline step over the median ppgen step
    (ppgen's speed over the baseline's), after ``warm`` steps."""

    def __init__(self, other: Callable[[], object], warm: int = 20):
        self.other, self.warm = other, warm
        self.ppgen: list[float] = []
        self.base: list[float] = []
        self.t = math.nan

    def __call__(self, step: int, metrics: object = None) -> None:
        now = time.perf_counter()
        if step > self.warm:
            self.ppgen.append(now - self.t)
        self.other()
        done = time.perf_counter()
        if step > self.warm:
            self.base.append(done - now)
        self.t = time.perf_counter()

    @property
    def ratio(self) -> float:
        return statistics.median(self.base) / statistics.median(self.ppgen)
