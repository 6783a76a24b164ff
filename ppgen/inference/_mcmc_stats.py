"""Pyro HMC/NUTS kernels that record per-transition sample statistics for ``MCMC``."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["stats_kernel"]


def stats_kernel(base: type) -> type:
    """Subclass a Pyro HMC/NUTS kernel to record per-transition statistics."""

    class Recording(base):  # type: ignore[misc, valid-type]
        _ppgen_fixed_steps: int | None = None

        if hasattr(base, "num_steps"):

            @property
            def num_steps(self) -> int:
                # Pyro derives the count from a trajectory length fixed at construction, so
                # step-size adaptation changes it; a fixed count stays fixed
                if self._ppgen_fixed_steps is not None:
                    return self._ppgen_fixed_steps
                return base.num_steps.fget(self)

        def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None:
            self._ppgen_stats: list[dict[str, Any]] = []
            super().setup(warmup_steps, *args, **kwargs)

        def _sample_r(self, name: str) -> Any:
            r, r_unscaled = super()._sample_r(name)
            _, pe, _ = self._fetch_from_cache()
            self._ppgen_energy = float(self._kinetic_energy(r_unscaled) + pe)
            self._ppgen_steps = 0
            return r, r_unscaled

        def _build_basetree(self, *args: Any, **kwargs: Any) -> Any:
            self._ppgen_steps += 1
            return super()._build_basetree(*args, **kwargs)

        def sample(self, params: Any) -> Any:
            n_div = len(self._divergences)
            mean_old = self._mean_accept_prob
            self._ppgen_energy = float("nan")
            self._ppgen_steps = 0
            step_size = float(self.step_size)
            z = super().sample(params)
            if self._t > self._warmup_steps:
                n = self._t - self._warmup_steps
                # recovered from Pyro's running mean; clip the rounding of n*a - (n-1)*b
                acc = min(max(n * self._mean_accept_prob - (n - 1) * mean_old, 0.0), 1.0)
                steps = self._ppgen_steps if hasattr(self, "_max_tree_depth") else self.num_steps
                _, pe, _ = self._fetch_from_cache()
                self._ppgen_stats.append(
                    {
                        "diverging": len(self._divergences) > n_div,
                        "energy": self._ppgen_energy,
                        "step_size": step_size,
                        "n_steps": steps,
                        "tree_depth": int(np.ceil(np.log2(steps + 1))),
                        "acceptance_rate": float(acc),
                        "lp": -float(pe) if pe is not None else float("nan"),
                    }
                )
            return z

    Recording.__name__ = base.__name__
    return Recording
