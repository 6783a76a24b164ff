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
