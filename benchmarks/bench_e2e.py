"""End to end, as a user waits: ``ppgen.fit`` (+ ``to_arviz``) against the raw library's run.

Usage, from the repository root: python -m benchmarks.bench_e2e [--quick] [--reps N] [--write]

``bench_core`` times the sampler and the optimiser loop inside a fit; this measures what a
user waits for, on the *same user-written program* on both sides, with the same settings and
seed, in one process:

- NUTS on eight schools (a plain Pyro program and a plain NumPyro program): ``ppgen.fit``
  (validation traces, sampling, sample statistics, health checks) and ``fit.to_arviz()``
  (posterior, sample_stats, log_likelihood, posterior_predictive, observed_data) against
  ``MCMC.run`` and ``az.from_pyro`` / ``az.from_numpyro`` given the same groups (a
  ``Predictive`` for the posterior predictive, ``log_likelihood=True``). Both sides draw the
  same chain (same seed, init strategy and adaptation), which the run checks.
- SVI on LDA written as Pyro's ``examples/lda.py`` (global topics, per-document topic
  weights with an amortised encoder guide, word topics summed out by enumeration,
  ``TraceEnum_ELBO``): ``ppgen.fit(..., SVI(guide=guide, elbo="enum"))`` with its default
  posterior draws, against the same number of ``pyro.infer.SVI`` steps.

Pairs are interleaved (ppgen first in even repetitions, raw first in odd ones) after an
untimed warm-up pair (three times as many pairs for NumPyro, whose runs are mostly XLA
compilation and vary by about 20% run to run); the median wall time is reported with the ratio
ppgen/raw (goal <= 1.1).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

# first: bench_core sets XLA_FLAGS, one torch thread and ArviZ's warning filter
from benchmarks.bench_core import (
    jax_data,
    machine,
    med,
    numpyro_schools,
    paired,
    pyro_schools,
    torch_data,
)

# isort: split

import arviz as az
import jax
import numpy as np
import pyro
import pyro.distributions as pdist
import torch
from torch import nn

import ppgen
from ppgen.data import load
from ppgen.errors import SamplerWarning
from ppgen.inference import NUTS, SVI

TABLE_HEADER = "| case | metric | ppgen | raw | ppgen/raw | <= 1.1 |"
SEED = 0
GOAL = 1.1


# ---------------------------------------------------------------- NUTS, eight schools
def nuts_ppgen(model: Callable, data: dict, backend: str, w: int, s: int) -> np.ndarray:
    est = NUTS(num_samples=s, num_warmup=w, jit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplerWarning)  # a short run may warn; both sides same
        fit = ppgen.fit(model, data, est, seed=SEED, progress=False, backend=backend)
    idata = fit.to_arviz()
    assert {"posterior_predictive", "log_likelihood"} <= set(idata.groups())
    return np.asarray(fit.draws["mu"]).ravel()


def nuts_raw_pyro(data: dict, w: int, s: int) -> np.ndarray:
    from pyro.infer import MCMC, Predictive
    from pyro.infer import NUTS as PyroNUTS

    pyro.set_rng_seed(SEED)
    kernel = PyroNUTS(pyro_schools, jit_compile=True, ignore_jit_warnings=True)
    mcmc = MCMC(kernel, num_samples=s, warmup_steps=w, disable_progbar=True)
    mcmc.run(**data)
    pred = Predictive(pyro_schools, mcmc.get_samples())(data["sigma"])
    idata = az.from_pyro(mcmc, posterior_predictive=pred, log_likelihood=True)
    assert {"posterior_predictive", "log_likelihood"} <= set(idata.groups())
    return mcmc.get_samples()["mu"].numpy().ravel()


def nuts_raw_numpyro(data: dict, w: int, s: int) -> np.ndarray:
    from numpyro.infer import MCMC, Predictive
    from numpyro.infer import NUTS as JaxNUTS

    mcmc = MCMC(JaxNUTS(numpyro_schools), num_warmup=w, num_samples=s, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(SEED), **data)
    pred = Predictive(numpyro_schools, mcmc.get_samples())(
        jax.random.PRNGKey(SEED + 1), data["sigma"]
    )
    idata = az.from_numpyro(mcmc, posterior_predictive=pred, log_likelihood=True)
    assert {"posterior_predictive", "log_likelihood"} <= set(idata.groups())
    return np.asarray(mcmc.get_samples()["mu"]).ravel()


# ---------------------------------------------------------------- SVI, LDA as Pyro's lda.py
def lda_corpus(num_docs: int, num_words: int, vocab: int, topics: int, seed: int) -> np.ndarray:
    """A corpus from LDA's own generative process, laid out (words, documents) as lda.py."""
    rng = np.random.default_rng(seed)
    topic_words = rng.dirichlet(np.full(vocab, 0.1), size=topics)
    doc_topics = rng.dirichlet(np.full(topics, 0.5), size=num_docs)
    words = np.empty((num_words, num_docs), np.int64)
    for d in range(num_docs):
        z = rng.choice(topics, size=num_words, p=doc_topics[d])
        words[:, d] = [rng.choice(vocab, p=topic_words[k]) for k in z]
    return words


class LDA:
    """Pyro's examples/lda.py model and amortised guide, as a user writes them."""

    def __init__(self, vocab: int, topics: int, hidden: int = 64) -> None:
        self.vocab, self.topics = vocab, topics
        self.predictor = nn.Sequential(
            nn.Linear(vocab, hidden), nn.Sigmoid(), nn.Linear(hidden, topics), nn.Softmax(-1)
        )

    def model(self, data: torch.Tensor) -> None:
        num_words, num_docs = data.shape
        with pyro.plate("topics", self.topics):
            topic_weights = pyro.sample("topic_weights", pdist.Gamma(1.0 / self.topics, 1.0))
            topic_words = pyro.sample(
                "topic_words", pdist.Dirichlet(torch.ones(self.vocab) / self.vocab)
            )
        with pyro.plate("documents", num_docs):
            doc_topics = pyro.sample("doc_topics", pdist.Dirichlet(topic_weights))
            with pyro.plate("words", num_words, dim=-2):
                word_topics = pyro.sample(
                    "word_topics", pdist.Categorical(doc_topics), infer={"enumerate": "parallel"}
                )
                pyro.sample("doc_words", pdist.Categorical(topic_words[word_topics]), obs=data)

    def guide(self, data: torch.Tensor) -> None:
        num_words, num_docs = data.shape
        tw_post = pyro.param(
            "topic_weights_posterior",
            lambda: torch.ones(self.topics),
            constraint=pdist.constraints.positive,
        )
        twords_post = pyro.param(
            "topic_words_posterior",
            lambda: torch.ones(self.topics, self.vocab),
            constraint=pdist.constraints.greater_than(0.5),
        )
        with pyro.plate("topics", self.topics):
            pyro.sample("topic_weights", pdist.Gamma(tw_post, 1.0))
            pyro.sample("topic_words", pdist.Dirichlet(twords_post))
        pyro.module("predictor", self.predictor)
        with pyro.plate("documents", num_docs):
            counts = torch.zeros(self.vocab, num_docs).scatter_add(0, data, torch.ones(data.shape))
            doc_topics = self.predictor(counts.transpose(0, 1))
            pyro.sample("doc_topics", pdist.Delta(doc_topics, event_dim=1))


def lda_ppgen(words: np.ndarray, cfg: dict) -> float:
    pyro.clear_param_store()
    torch.manual_seed(SEED)
    lda = LDA(cfg["vocab"], cfg["topics"])
    est = SVI(guide=lda.guide, elbo="enum", steps=cfg["steps"], lr=cfg["lr"])
    fit = ppgen.fit(lda.model, {"data": words}, est, seed=SEED, progress=False)
    return float(fit.history["loss"][-1])


def lda_raw(words: np.ndarray, cfg: dict) -> float:
    from pyro.infer import SVI as PyroSVI
    from pyro.infer import TraceEnum_ELBO

    pyro.clear_param_store()
    torch.manual_seed(SEED)
    pyro.set_rng_seed(SEED)
    lda = LDA(cfg["vocab"], cfg["topics"])
    data = torch.as_tensor(words)
    elbo = TraceEnum_ELBO(max_plate_nesting=2)
    svi = PyroSVI(lda.model, lda.guide, pyro.optim.Adam({"lr": cfg["lr"]}), elbo)
    loss = float("nan")
    for _ in range(cfg["steps"]):
        loss = svi.step(data)
    return loss


# ---------------------------------------------------------------- harness
ROWS: list[tuple] = []


def row(case: str, metric: str, a: float, b: float) -> float:
    ratio = a / b
    ROWS.append((case, metric, a, b, ratio, "yes" if ratio <= GOAL else "NO"))
    return ratio


def nuts_cases(cfg: dict) -> None:
    data = load("eight_schools")
    w, s, reps = cfg["warmup"], cfg["samples"], cfg["reps"]
    sides = {
        "pyro": (pyro_schools, torch_data(data), nuts_raw_pyro),
        "numpyro": (numpyro_schools, jax_data(data), nuts_raw_numpyro),
    }
    for backend, (model, native, raw) in sides.items():
        if backend not in cfg["backends"]:
            continue

        def a(
            ww: int = w, ss: int = s, m: Callable = model, d: dict = native, be: str = backend
        ) -> np.ndarray:
            return nuts_ppgen(m, d, be, ww, ss)

        def b(ww: int = w, ss: int = s, f: Callable = raw, d: dict = native) -> np.ndarray:
            return f(d, ww, ss)

        paired(lambda: a(5, 5), lambda: b(5, 5), 1)  # untimed: imports and caches
        # a NumPyro run is mostly XLA compilation (a few seconds, +-20% run to run): more pairs
        ra, rb = paired(a, b, reps * 3 if backend == "numpyro" else reps)
        same = np.allclose(ra[0][1], rb[0][1], rtol=1e-5, atol=1e-6)
        print(f"  NUTS eight schools [{backend}]: same chain as raw: {same}", flush=True)
        row(
            f"NUTS eight schools, plain {backend} program [{backend}]",
            f"wall s: fit + to_arviz ({w}+{s} draws; same chain: {same})",
            med(ra),
            med(rb),
        )


def svi_case(cfg: dict) -> None:
    words = lda_corpus(cfg["docs"], cfg["words"], cfg["vocab"], cfg["topics"], seed=1)
    warm = {**cfg, "steps": 2}
    paired(lambda: lda_ppgen(words, warm), lambda: lda_raw(words, warm), 1)
    ra, rb = paired(lambda: lda_ppgen(words, cfg), lambda: lda_raw(words, cfg), cfg["reps"])
    loss_a, loss_b = ra[0][1], rb[0][1]
    print(f"  LDA final loss ppgen {loss_a:.1f}, raw {loss_b:.1f}", flush=True)
    row(
        "SVI LDA as Pyro's lda.py [pyro]",
        f"wall s: fit ({cfg['steps']} steps, {cfg['docs']} docs x {cfg['words']} words, "
        "default posterior draws) vs raw loop",
        med(ra),
        med(rb),
    )


def table() -> list[str]:
    lines = [TABLE_HEADER, "|" + "---|" * 6]
    for case, metric, a, b, ratio, ok in ROWS:
        lines.append(f"| {case} | {metric} | {a:.4g} | {b:.4g} | {ratio:.3f} | {ok} |")
    return lines


def main(argv: list[str] | None = None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--only", choices=("nuts", "svi"), nargs="*")
    parser.add_argument(
        "--backends", choices=("pyro", "numpyro"), nargs="*", help="NUTS backends (default both)"
    )
    parser.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    q = args.quick
    ROWS.clear()
    cfg = {
        "reps": args.reps or (1 if q else 3),
        "warmup": 20 if q else 1000,
        "samples": 20 if q else 1000,
        "steps": 5 if q else 100,
        "docs": 20 if q else 500,
        "words": 8 if q else 32,
        "vocab": 30 if q else 100,
        "topics": 3 if q else 8,
        "lr": 0.01,
        "backends": tuple(args.backends or ("pyro", "numpyro")),
    }
    only = set(args.only or ("nuts", "svi"))
    t0 = time.perf_counter()
    lines = machine()
    print("\n".join(lines), flush=True)
    if "nuts" in only:
        nuts_cases(cfg)
    if "svi" in only:
        svi_case(cfg)
    body = table()
    print("\n".join(body))
    print(f"total benchmark time {time.perf_counter() - t0:.1f} s", flush=True)
    if args.write:
        note = (
            f"end to end; NUTS {cfg['warmup']}+{cfg['samples']}, 1 chain; LDA SVI "
            f"{cfg['steps']} steps; median of {cfg['reps']} interleaved repetitions"
        )
        when = datetime.datetime.now(datetime.timezone.utc)
        text = [f"\n## Run {when:%Y-%m-%d %H:%M} UTC (bench_e2e)", "", *lines, f"- {note}", ""]
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write("\n".join([*text, *body, ""]))
    return list(ROWS)


if __name__ == "__main__":
    main(sys.argv[1:])
