"""How a zoo model shows itself on the command line: ``ppgen fit NAME`` builds it from this.

A zoo class declares ``cli = (CLISpec(...), ...)``; ``ppgen.cli`` collects every declaration
from :mod:`ppgen.models`, so a new model appears in ``ppgen models`` and ``ppgen fit`` without
touching the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLISpec"]


@dataclass(frozen=True)
class CLISpec:
    """One command-line name of a zoo model.

    Attributes:
        name: the name after ``ppgen fit`` (``"vae"``).
        family: the survey family shown by ``ppgen models`` (``"VAE"``).
        data: the default ``--data`` (a built-in dataset name).
        method: the default ``--method`` (a registered estimator name).
        options: constructor arguments ``--arg NAME=VALUE`` may set, with their types.
        fixed: constructor arguments this name always passes (a variant, e.g. centred).
        description: one line for ``ppgen models``.
        sizes: constructor arguments read from the data's shapes: ``{"vocab_size": ("counts",
            1)}`` passes ``data["counts"].shape[1]``; an axis of ``None`` passes the shape of
            one row (``data[key].shape[1:]``, e.g. an image's ``(C, H, W)``). So ``--data`` may
            be any file whose arrays the model's arguments fit.
        estimator_args: options of the default estimator read from the built model:
            ``{"info_sites": "info_sites", "guide": "q"}`` passes ``model.info_sites`` and
            ``model.q`` (InfoGAN's code sites and recogniser) when ``--method`` is
            :attr:`method`.

    Example:
        >>> spec = CLISpec("vae", "VAE", "digits_binary", "svi", {"z_dim": int})
        >>> spec.parse(["z_dim=4"])
        {'z_dim': 4}
    """

    name: str
    family: str
    data: str
    method: str
    options: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    sizes: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)
    estimator_args: Mapping[str, str] = field(default_factory=dict)

    def estimator_options(self, model: Any, method: str) -> dict[str, Any]:
        """The :attr:`estimator_args` of the built ``model`` (``{}`` for another ``method``)."""
        if method.lower() != self.method:
            return {}
        return {key: getattr(model, attr) for key, attr in self.estimator_args.items()}

    def arguments(self, pairs: list[str], data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The constructor arguments: :attr:`fixed`, then :attr:`sizes` read from ``data``,
        then the ``--arg`` ``pairs`` (which win).

        Example:
            >>> import numpy as np
            >>> spec = CLISpec("lda", "topic", "four_topics", "svi", {"num_topics": int},
            ...                fixed={"num_topics": 4}, sizes={"vocab_size": ("counts", 1)})
            >>> spec.arguments(["num_topics=3"], {"counts": np.zeros((5, 7))})
            {'num_topics': 3, 'vocab_size': 7}
        """
        out = dict(self.fixed)
        if self.sizes and data is None:
            raise ValueError(
                f"{self.name} takes {sorted(self.sizes)} from the data's shapes; give the data."
            )
        for arg, (key, axis) in self.sizes.items():
            value = data.get(key) if data is not None else None
            shape = getattr(value, "shape", None)
            if shape is None or len(shape) < 2:
                raise ValueError(
                    f"{self.name} reads `{arg}` from data[{key!r}], which must be an array of "
                    f"rows; the data has {sorted(data or {})} and {key!r} has shape {shape}."
                )
            out[arg] = tuple(int(n) for n in shape[1:]) if axis is None else int(shape[axis])
        out.update(self.parse(pairs))
        return out

    def parse(self, pairs: list[str]) -> dict[str, Any]:
        """``["NAME=VALUE", ...]`` as constructor arguments, converted by :attr:`options`."""
        out: dict[str, Any] = {}
        for pair in pairs:
            key, sep, text = pair.partition("=")
            if not sep or key not in self.options:
                raise ValueError(
                    f"`--arg {pair}`: {self.name} takes "
                    + (", ".join(f"{k}=..." for k in self.options) or "no options")
                    + "."
                )
            try:
                out[key] = self.options[key](text)
            except ValueError as e:
                raise ValueError(f"`--arg {pair}`: {e}") from e
        return out
