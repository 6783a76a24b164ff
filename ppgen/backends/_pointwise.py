"""What one entry of a pointwise log-likelihood is, for both backends.

Plain programs: each observed site gives one variable, one entry per element of its batch
shape, ``log p(x_i | kept latents)`` (the latents of the posterior draw). A masked-out element
(``poutine.mask``/``handlers.mask``) contributes 0, as in Pyro's and NumPyro's own log-density,
so the sum over entries is the log-likelihood of the observed (unmasked) elements.

Programs with enumerated discrete latents (``infer={"enumerate": "parallel"}``): those latents
are summed out exactly. Observed sites linked through enumerated latents (the emissions
``y_0 .. y_T`` of an HMM, linked by its chain ``x_t``; one ``scan`` site of NumPyro) are not
conditionally independent given the kept latents, so they form one *group* whose entries are
indexed by the plates that all its sites and enumerated latents share (for an HMM inside
``plate("sequences", N)``: one entry per sequence, the forward-algorithm marginal). A group is
reported as ONE variable named after its first observed site (in execution order); a group
of one site whose enumerated latents live in its own plates (a mixture) keeps the site's
name and shape. A group whose latents are shared by the whole data set (no common plate) is
one entry: the marginal log-likelihood of all its data. :class:`Unit` says what each
variable's entries are; :func:`units_json` is what ``to_arviz`` stores in
``idata.attrs["ppgen_log_likelihood_units"]``.

Masks on enumerated latents are ignored, as Pyro's ``TraceEnum_ELBO`` does: a distribution
summed over all its values is 1 whatever the mask, while masking it would add ``log K``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ppgen.errors import CapabilityError

__all__ = ["Unit", "LogLikelihood", "group_factors", "units_json", "plain_units"]


@dataclass(frozen=True)
class Unit:
    """The entries of one log-likelihood variable ``name``.

    ``sites``: the observed sites whose log-densities it holds (summed within an entry);
    ``plates``: ``(plate, size)`` of the plates indexing its entries, outermost first (empty:
    one entry); ``enumerated``: the discrete latents summed out; ``shape``: its shape per draw.
    """

    name: str
    sites: tuple[str, ...]
    plates: tuple[tuple[str, int], ...] = ()
    enumerated: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()

    def describe(self) -> dict:
        """A JSON-able description (what ``to_arviz`` stores per variable)."""
        if not self.enumerated:
            what = f"log p({self.sites[0]}[i] | kept latents) per element; masked elements are 0"
        elif self.plates:
            names = ", ".join(p for p, _ in self.plates)
            what = (
                f"log p(all of {', '.join(self.sites)} in one [{names}] entry | kept latents), "
                f"with {', '.join(self.enumerated)} summed out exactly"
            )
        else:
            what = (
                f"one entry: log p(all of {', '.join(self.sites)} | kept latents), with "
                f"{', '.join(self.enumerated)} summed out exactly (they are shared by all data)"
            )
        return {
            "sites": list(self.sites),
            "unit_plates": [p for p, _ in self.plates],
            "shape": list(self.shape),
            "enumerated": list(self.enumerated),
            "entry": what,
        }


class LogLikelihood(dict):
    """``{variable: array (S, *shape)}`` with :attr:`units` (``{variable: Unit}``) attached.

    Example:
        >>> import numpy as np
        >>> ll = LogLikelihood({"x": np.zeros((2, 3))}, {"x": Unit("x", ("x",), shape=(3,))})
        >>> ll.units["x"].sites, ll["x"].shape
        (('x',), (2, 3))
    """

    def __init__(self, values: Mapping, units: Mapping[str, Unit]) -> None:
        super().__init__(values)
        self.units = dict(units)

    def with_values(self, values: Mapping) -> LogLikelihood:
        """The same units with new values (e.g. reshaped to ``(chain, draw, ...)``)."""
        return LogLikelihood(values, self.units)


def plain_units(shapes: Mapping[str, tuple[int, ...]], plates: Mapping[str, tuple] | None = None):
    """One :class:`Unit` per site of ``shapes``: the site itself, element by element."""
    plates = plates or {}
    return {n: Unit(n, (n,), tuple(plates.get(n, ())), (), tuple(s)) for n, s in shapes.items()}


def group_factors(links: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Connected components of factors (``{factor: the summed variables it touches}``): two
    factors are in one component when they share a summed variable. Order: first appearance.

    Example:
        >>> group_factors({"x0": {"a"}, "y0": {"a"}, "x1": {"a", "b"}, "y1": {"b"}, "w": set()})
        [['x0', 'y0', 'x1', 'y1'], ['w']]
    """
    parent = {f: f for f in links}

    def root(f: str) -> str:
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    owner: dict[str, str] = {}
    for f, vs in links.items():
        for v in vs:
            if v in owner:
                a, b = root(owner[v]), root(f)
                if a != b:
                    parent[b] = a
            else:
                owner[v] = f
    groups: dict[str, list[str]] = {}
    for f in links:
        groups.setdefault(root(f), []).append(f)
    return list(groups.values())


def units_json(units: Mapping[str, Unit]) -> str:
    """``{variable: Unit.describe()}`` as a JSON string (netCDF-safe attribute)."""
    return json.dumps({k: u.describe() for k, u in units.items()}, sort_keys=True)


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def sequential_error(names: list[str]) -> CapabilityError:
    return CapabilityError(
        f"Cannot compute the pointwise log-likelihood: the discrete latent site(s) "
        f"{_names(names)} are marked infer={{'enumerate': 'sequential'}}; ppgen sums discrete "
        "latents out only by parallel enumeration. Mark them 'parallel' (config_enumerate's "
        "default), or sample them in the guide so that each draw holds their values."
    )


def enumerated_requested_error(names: list[str]) -> CapabilityError:
    return CapabilityError(
        f"The site(s) {_names(names)} are enumerated (summed out), so they have no value per "
        "draw and no pointwise log-density; ask for the observed sites instead."
    )


def latent_on_enum_error(name: str, enum: list[str]) -> CapabilityError:
    return CapabilityError(
        f"Cannot compute the pointwise log-likelihood: the latent site `{name}` (held by the "
        f"draws) depends on the enumerated site(s) {_names(enum)}, so the observations' "
        "likelihood given the draws would need p(latent) summed over the enumerated values, "
        "which ppgen does not compute. Enumerate or sample both in the same way (e.g. sample "
        f"{_names(enum)} in the guide)."
    )


def partial_group_error(asked: list[str], group: list[str], enum: list[str]) -> CapabilityError:
    return CapabilityError(
        f"The observed site(s) {_names(asked)} are linked to {_names(group)} through the "
        f"enumerated latent(s) {_names(enum)}: their log-likelihood exists only jointly, "
        "as one variable. Ask for all of these sites together."
    )


def contraction_error(sites: list[str], enum: list[str], why: object) -> CapabilityError:
    return CapabilityError(
        f"Cannot sum the enumerated site(s) {_names(enum)} out of the log-likelihood of "
        f"{_names(sites)} exactly ({why}). ppgen refuses rather than return a wrong value; "
        "sample these latents in the guide instead of enumerating them."
    )


@dataclass
class Plan:
    """How one backend computes a program's pointwise log-likelihood (see module docstring).

    ``plain``: requested sites computed element by element; ``groups``: per variable name the
    observed sites, the enumerated latents and the unit plates ``(name, size, dim)``.
    """

    plain: list[str] = field(default_factory=list)
    groups: dict[str, dict] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)


def make_plan(
    factors: Mapping[str, dict],
    shapes: Mapping[str, tuple[int, ...]],
    site_plates: Mapping[str, tuple],
) -> Plan:
    """Group observed factors through enumerated latents and decide each variable's unit.

    ``factors``: per factor (in execution order) ``{"site": user site name, "kind":
    "observed" | "enumerated" | "latent", "vars": summed variables it touches, "plates":
    {(plate, size, dim), ...}}``; ``shapes``: the requested sites; ``site_plates``: each
    requested site's plates ``((name, size), ...)`` for plain units. Raises the refusals.
    """
    for f in factors.values():
        if f["kind"] == "latent" and f["vars"]:
            enum = sorted({g["site"] for g in factors.values() if g["kind"] == "enumerated"})
            raise latent_on_enum_error(f["site"], enum)
    linked = {k: f["vars"] for k, f in factors.items() if f["kind"] != "latent" and f["vars"]}
    plan = Plan()
    grouped: set[str] = set()
    for comp in group_factors(linked):
        obs = _unique(factors[k]["site"] for k in comp if factors[k]["kind"] == "observed")
        if not obs:
            continue
        enum = _unique(factors[k]["site"] for k in comp if factors[k]["kind"] == "enumerated")
        asked = [s for s in obs if s in shapes]
        if not asked:
            continue
        if len(asked) < len(obs):
            raise partial_group_error(asked, obs, enum)
        common = frozenset.intersection(*(frozenset(factors[k]["plates"]) for k in comp))
        unit = tuple(sorted(common, key=lambda p: p[2]))
        shape = tuple(p[1] for p in unit)
        name = obs[0]
        if len(obs) == 1 and _prod(shape) == _prod(shapes[name]) and len(shapes[name]) >= 1:
            shape = tuple(shapes[name])  # a mixture: the site's own shape
        plan.groups[name] = {"sites": obs, "enumerated": enum, "plates": unit, "factors": comp}
        plan.units[name] = Unit(name, tuple(obs), tuple(p[:2] for p in unit), tuple(enum), shape)
        grouped.update(obs)
    for n in shapes:
        if n not in grouped:
            plan.plain.append(n)
            plan.units[n] = Unit(n, (n,), tuple(site_plates.get(n, ())), (), tuple(shapes[n]))
    return plan


def _unique(xs: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(xs))


def _prod(shape: Iterable[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out
