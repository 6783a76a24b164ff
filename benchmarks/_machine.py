"""The machine description every benchmark prints above its table."""

from __future__ import annotations

import datetime
import os
import platform
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
