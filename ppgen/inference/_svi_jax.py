"""SVI's JAX engine: NumPyro's ``SVI`` with a jitted update, checkpointable state."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.errors import EstimatorError, ProgramError
from ppgen.inference._guide_fit import density_guide, guide_fit, guide_latents
from ppgen.inference._step_errors import step_error
from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext


__all__ = ["JaxEngine", "JaxState", "flatten_params", "unflatten_params"]


class JaxState:
    """A JAX engine's run state: one pytree ``self.state`` (its step before, ``self.previous``).

    Checkpoints hold its leaves as numpy arrays; the tree's structure comes from the rebuilt
    engine, so nothing but arrays is saved.
    """

    state: Any
    previous: Any

    def rewind(self) -> None:
        self.state = self.previous

    def state_dict(self) -> dict[str, Any]:
        import jax

        return {"leaves": [np.asarray(x) for x in jax.tree_util.tree_leaves(self.state)]}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        import jax
        import jax.numpy as jnp

        treedef = jax.tree_util.tree_structure(self.state)
        self.state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in sd["leaves"]])


class JaxEngine(JaxState):
    """NumPyro's ``SVI`` with a jitted update; state is the ``SVIState`` pytree."""

    async_metrics = True  # `step` returns the loss as a JAX array, possibly still computing

    def __init__(self, est: Any, ctx: FitContext) -> None:
        import jax
        import numpyro

        self.est, self.ctx = est, ctx
        plate = ctx.extra.get("batch_plate")
        self.scaler = ctx.program.ops.scale_box(plate) if plate else None
        model = ctx.program.model
        if self.scaler:
            model = self.scaler(model)
        self.model = model
        self.guide = est._resolve_guide(ctx, model, "numpyro")
        guide = self.scaler(self.guide) if self.scaler else self.guide
        self.elbo = est._make_elbo(ctx, "numpyro")
        self.optim = est.optim if not isinstance(est.optim, str) else None
        if self.optim is None:
            self.optim = est._optim_spec().numpyro(est._total_steps())
        self.svi = numpyro.infer.SVI(model, guide, self.optim, self.elbo)
        try:
            self.state = self.svi.init(jax.random.PRNGKey(ctx.seed), **ctx.data)
        except RuntimeError as e:
            if "valid initial param" not in str(e):
                raise
            raise self._init_error(e) from e
        # Only the minibatched arrays are traced arguments of the jitted update; every other
        # argument is closed over, as NumPyro's own `SVI.run` does, so a program may compute
        # with its covariates in NumPy (`np.unique(dept)`) or take settings (ints, objects).
        self.batch_keys = tuple(ctx.extra.get("batch_keys") or ())
        fixed = {k: v for k, v in ctx.data.items() if k not in self.batch_keys}
        update = self.svi.update
        self._update = jax.jit(lambda state, **batch: update(state, **batch, **fixed))
        self._shardings = self._batch_shardings(est, ctx)
        self._befores: list[Any] = []

    def _init_error(self, err: RuntimeError) -> ProgramError:
        """NumPyro found no starting point for the guide: name the sites whose density is not
        finite at prior draws of the latents."""
        from ppgen.backends._numpyro_ops import nonfinite_sites

        seed = self.ctx.seed
        sites = nonfinite_sites(self.ctx.program.model, self.ctx.data, seed=seed)
        where = (
            f"the log-density is not finite at site(s) {sites} for a prior draw of the latents "
            f"(seed {seed})"
            if sites
            else "the log-density is not finite wherever the guide's initialisation looked"
        )
        return ProgramError(
            f"SVI cannot start: {where} (NumPyro: {err}). Check what those sites compute (a "
            "`factor` of -inf or NaN? a likelihood whose support excludes the data?), or give "
            "the guide an `init_loc_fn` inside the region where the model has a density."
        )

    def step(self, data: Mapping[str, Any], scale: float) -> Any:
        if self.scaler:
            self.scaler.scale = scale
        self.previous = self.state  # immutable arrays: a reference, not a copy
        # the states before the last two steps: the loop reads a loss one step late, and a
        # NaN step is diagnosed with the parameters it started from
        self._befores = (self._befores + [self.state])[-2:]
        batch = {k: data[k] for k in self.batch_keys}
        if self._shardings:
            batch = self._shard(batch)
        try:
            self.state, loss = self._update(self.state, **batch)
        except Exception as e:
            import jax

            tracer = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError)
            if not isinstance(e, tracer):
                raise
            keys = ", ".join(self.batch_keys)
            raise ProgramError(
                f"The program needs the values of a minibatched argument ({keys}) while "
                f"NumPyro's SVI step is compiled ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0]}). Arguments that are minibatched are traced "
                "arrays: compute with them in jax.numpy (not NumPy, `int()` or `if`), and pass "
                "what you derive from all the data (e.g. the number of groups) as an argument "
                "of its own, which ppgen closes over; or leave `batch_size` out."
            ) from e
        return loss

    def _batch_shardings(self, est: Any, ctx: FitContext) -> dict[str, Any]:
        """Each minibatched array's sharding across ``ctx.extra["shard_devices"]`` (set by
        the :class:`~ppgen.inference.runners.JaxDevices` runner): split along the axis the batch
        plate indexes, so that XLA runs each device's part of the batch there and reduces the
        gradients; the parameters stay replicated. Empty without that runner."""
        devices = ctx.extra.get("shard_devices")
        if not devices:
            return {}
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        n = len(devices)
        if not self.batch_keys or est.batch_size % n:
            raise EstimatorError(
                f"Sharding the minibatch across {n} devices needs minibatches whose size "
                f"divides into {n} (batch_size={est.batch_size}). Give the estimator "
                f"batch_size= a multiple of {n}."
            )
        mesh = Mesh(np.array(devices), ("batch",))
        axes = ctx.extra.get("batch_axes") or {}

        def spec(key: str) -> Any:
            return NamedSharding(mesh, PartitionSpec(*([None] * axes.get(key, 0)), "batch"))

        self.devices = ", ".join(str(d) for d in devices)
        self._shard_axes = {k: axes.get(k, 0) for k in self.batch_keys}
        return {k: spec(k) for k in self.batch_keys}

    def _shard(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch placed across the devices (a last partial batch that does not split
        evenly stays on one device: one more compilation, same result)."""
        import jax

        n = self._shardings[next(iter(self._shardings))].mesh.size
        out = {}
        for k, v in batch.items():
            even = np.shape(v)[self._shard_axes[k]] % n == 0
            out[k] = jax.device_put(v, self._shardings[k]) if even else v
        return out

    def gradient_report(self) -> dict[str, Any]:
        """The full-data loss at the final parameters, evaluated twice (two PRNG keys), and per
        parameter its gradient norm and its curvature along the gradient.

        ``{"loss": L, "repeat": L', "gradients": {name: (|g_k|, g_k^T H_kk g_k)}}`` over the
        unconstrained parameters (a pytree counts as one), the curvature by a forward-over-
        reverse Hessian-vector product compiled once for all (NaN where a function has no
        forward-mode derivative). ``L != L'`` says the objective itself is random.
        """
        import jax
        import jax.numpy as jnp

        svi, data = self.svi, self.ctx.data
        if self.scaler:
            self.scaler.scale = 1.0
        key, other = jax.random.split(jax.random.PRNGKey(self.ctx.seed))
        unconstrained = svi.optim.get_params(self.state.optim_state)

        def loss(u: Any, key: Any = key) -> Any:
            return svi.loss.loss(key, svi.constrain_fn(u), svi.model, svi.guide, **data)

        grad = jax.grad(loss)
        hvp = jax.jit(lambda u, t: jax.jvp(grad, (u,), (t,))[1])  # compiled once for all k
        value, g = jax.jit(jax.value_and_grad(loss))(unconstrained)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, unconstrained)
        report = {}
        for k in unconstrained:
            gk = jax.tree_util.tree_leaves(g[k])
            norm = math.sqrt(sum(float(jnp.vdot(a, a)) for a in gk))
            try:
                hk = jax.tree_util.tree_leaves(hvp(unconstrained, {**zeros, k: g[k]})[k])
                curv = sum(float(jnp.vdot(a, b)) for a, b in zip(gk, hk, strict=True))
            except Exception:  # e.g. a custom_vjp function: no forward-mode derivative
                curv = math.nan
            report[k] = (norm, curv)
        repeat = float(loss(unconstrained, other))
        return {"loss": float(value), "repeat": repeat, "gradients": report}

    def _finite_params(self) -> Any:
        """The newest parameters that are all finite (those a failing step started from)."""
        for state in [self.state, *reversed(self._befores)]:
            params = self.svi.get_params(state)
            if all(np.isfinite(v).all() for v in flatten_params(params).values()):
                return params
        return self.svi.get_params(self.state)

    def explain_failure(self, when: str, err: BaseException | None = None) -> Any:
        """A named error for a non-finite loss ``when`` (``"at step 7"``): a guide proposing
        values outside a model site's support (NumPyro does not validate, so such a proposal
        shows as NaN); ``None`` leaves the NaN guard's own message."""
        from ppgen.backends._numpyro_ops import find_proposal_fault

        if err is not None:
            return None
        params = self._finite_params()
        fault = find_proposal_fault(self.model, self.guide, params, self.ctx.data)
        return step_error(fault, when)

    def live_params(self, n: int) -> dict[str, Any] | None:
        """The parameters now, repeated ``n`` times (samples during training); ``None`` for
        nested parameters (network modules), which predictive cannot substitute by name."""
        return repeat_params(self.svi.get_params(self.state), n)

    def nonfinite(self) -> list[str]:
        flat = flatten_params(self.svi.get_params(self.state))
        return [k for k, v in flat.items() if not np.isfinite(v).all()]

    def nonfinite_loss_sites(self) -> list[str]:
        """Sites whose log-density is NaN/inf for a guide draw with the current parameters."""
        from ppgen.backends._numpyro_ops import nonfinite_sites

        params, seed = self._finite_params(), self.ctx.seed
        return nonfinite_sites(self.model, self.ctx.data, self.guide, params, seed=seed)

    def sampler(self, jparams: Mapping[str, Any]) -> Any:
        import jax
        from numpyro import handlers

        ctx = self.ctx
        latents = guide_latents(ctx)
        guide, model, ops = self.guide, ctx.program.model, ctx.program.ops

        def sample(n: int, seed: int) -> dict[str, np.ndarray]:
            if hasattr(guide, "sample_posterior"):
                out = guide.sample_posterior(
                    jax.random.PRNGKey(seed), jparams, sample_shape=(n,), **ctx.data
                )
                return {k: np.asarray(v) for k, v in out.items() if k in latents}
            return ops.predictive(
                handlers.substitute(model, data=jparams),
                ctx.data,
                num_samples=n,
                guide=handlers.substitute(guide, data=jparams),
                return_sites=latents,
                uncondition=False,
                seed=seed,
            )

        return sample

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the rebuilt run's parameters (flattened as saved), by name."""
        return {k: v.shape for k, v in flatten_params(self.svi.get_params(self.state)).items()}

    def restore(self, fit: Fit, state: Mapping[str, Any]) -> None:
        like = self.svi.get_params(self.state)
        fit.param_state = dict(state)
        jparams = unflatten_params(state, like)
        fit.posterior_sampler = self.sampler(jparams)
        from numpyro.infer.autoguide import AutoDelta

        point_mass = isinstance(self.guide, AutoDelta)
        fit.guide = density_guide(self.ctx, self.bound_guide(jparams), point_mass)
        fit.encoder = self.encoder()

    def finalize(self, history: dict[str, list[float]]) -> Fit:
        jparams = self.svi.get_params(self.state)
        params = flatten_params(jparams)
        sampler = self.sampler(jparams)
        diagnostics = {"guide": type(self.guide).__name__, "path": "numpyro"}
        if self._shardings:
            diagnostics["devices"] = self.devices
        from numpyro.infer.autoguide import AutoDelta

        point_mass = isinstance(self.guide, AutoDelta)
        fit = guide_fit(
            self.est,
            self.ctx,
            history,
            params,
            params,
            sampler,
            diagnostics,
            point_mass,
            guide=self.bound_guide(jparams),
        )
        fit.encoder = self.encoder()
        return fit

    def bound_guide(self, jparams: Mapping[str, Any]) -> Any:
        """The guide with the fitted parameters substituted (``fit.guide``)."""
        from numpyro import handlers

        return handlers.substitute(self.guide, data=dict(jparams))

    def encoder(self) -> Any:
        """The guide's ``encode_fit`` (an amortised guide declares it), for ``Fit.encode``."""
        return getattr(inspect.unwrap(self.guide), "encode_fit", None)


def repeat_params(params: Mapping[str, Any], n: int) -> dict[str, Any] | None:
    """``params`` with a leading axis of ``n`` copies, or ``None`` if any is nested."""
    import jax.numpy as jnp

    if any(isinstance(v, Mapping) for v in params.values()):
        return None
    return {k: jnp.broadcast_to(v, (n, *jnp.shape(v))) for k, v in params.items()}


def flatten_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """NumPyro params as flat numpy arrays; pytree params (e.g. IAF networks) as ``name/i``."""
    import jax

    out = {}
    for k, v in params.items():
        leaves = jax.tree_util.tree_leaves(v)
        if len(leaves) == 1 and not isinstance(v, list | tuple | dict):
            out[k] = np.asarray(v)
        else:
            out.update({f"{k}/{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
    return out


def unflatten_params(flat: Mapping[str, Any], like: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_params`, with the tree structure taken from ``like``."""
    import jax
    import jax.numpy as jnp

    out = {}
    for k, v in like.items():
        if k in flat:
            out[k] = jnp.asarray(flat[k])
        else:
            leaves = jax.tree_util.tree_leaves(v)
            treedef = jax.tree_util.tree_structure(v)
            out[k] = jax.tree_util.tree_unflatten(
                treedef, [jnp.asarray(flat[f"{k}/{i}"]) for i in range(len(leaves))]
            )
    return out
