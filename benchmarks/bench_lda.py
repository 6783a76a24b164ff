"""Amortised LDA: SVI documents/s through ppgen against a hand-written Pyro loop; a 10k-doc fit.

Usage, from the repository root:
    python -m benchmarks.bench_lda [--quick] [--reps N] [--steps S] [--profile] [--write]

Throughput: the same ``AmortizedLDA`` model, guide, encoder initialisation (one torch seed),
ELBO (``Trace_ELBO``), optimiser (``Adam(lr)``) and batch size, run (a) through
``ppgen.fit(AmortizedLDA(...), {"counts": counts}, SVI(batch_size=B))`` and (b) as a plain
``pyro.infer.SVI`` loop over the same model and guide written by hand with a subsampled
``pyro.plate("document", N, subsample=idx)`` (Pyro's own minibatch scaling), shuffled
minibatches drawn each epoch as ppgen does. Documents/s counts the steps after ``--skip``
(setup, parameter creation and the first steps excluded); ppgen's clock is a callback.
Documents/s is the batch size over the median step time (robust to bursts of load from other
processes on a shared machine); the mean-step rate is reported too.
Pairs alternate (ppgen first in even repetitions, raw first in odd ones) after an untimed
warm-up pair; medians and the median of the per-pair ratios are reported.

Scaling: ``ppgen.fit`` of ``AmortizedLDA`` on a simulated corpus of 10,000 documents
(``simulate_lda``) for ``--epochs`` epochs on one CPU thread: wall time, documents/s, topic
recovery (Hungarian-matched total-variation distance to the true topics, top-10 word overlap)
and held-out document-completion perplexity against the true model's and a unigram's.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import pstats
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing.*")

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
from torch.nn.functional import softplus  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import machine  # noqa: E402
from ppgen.analysis.metrics import hungarian_match  # noqa: E402
from ppgen.inference import SVI  # noqa: E402
from ppgen.models._amortized_lda import _seed_topics  # noqa: E402
from ppgen.models.lda import AmortizedLDA, fold_in, heldout_perplexity, simulate_lda  # noqa: E402

SEED = 0
THROUGHPUT_HEADER = (
    "| path | docs/s (median step) | docs/s (mean step) | wall s per fit | ppgen/raw docs/s |"
)
SCALING_HEADER = (
    "| decoder | docs | epochs | steps | wall s | docs/s | topic TV mean | TV max "
    "| top-10 overlap | held-out ppl | true-model ppl | unigram ppl |"
)


# ---------------------------------------------------------------- the two runs
def make_lda(cfg: dict) -> AmortizedLDA:
    torch.manual_seed(SEED)
    return AmortizedLDA(cfg["vocab"], cfg["topics"], hidden=cfg["hidden"])


def run_ppgen(counts: np.ndarray, cfg: dict, steps: int) -> dict[str, float]:
    """One ``ppgen.fit``: docs/s over steps ``skip..steps`` and the whole call's wall time."""
    lda = make_lda(cfg)
    pyro.clear_param_store()  # validation traces the guide: no stale params of other shapes
    stamps: list[float] = []
    est = SVI(steps=steps, lr=cfg["lr"], batch_size=cfg["batch"], num_draws=1)
    t0 = time.perf_counter()
    ppgen.fit(
        lda,
        {"counts": counts},
        est,
        seed=SEED,
        callbacks=[lambda step, metrics: stamps.append(time.perf_counter())],
    )
    return _rates(stamps, time.perf_counter() - t0, cfg)


def run_raw(counts: np.ndarray, cfg: dict, steps: int) -> dict[str, float]:
    """The same model, guide, ELBO and optimiser as a hand-written ``pyro.infer.SVI`` loop."""
    lda = make_lda(cfg)
    K, V, B = cfg["topics"], cfg["vocab"], cfg["batch"]
    beta = float(lda.beta)
    t0 = time.perf_counter()
    pyro.clear_param_store()
    pyro.set_rng_seed(SEED)
    data = torch.as_tensor(counts)
    N = data.shape[0]

    def model(batch: torch.Tensor, idx: torch.Tensor) -> None:
        pyro.module("amortized_lda", lda)
        with pyro.plate("topic", K):
            topics = pyro.sample("topics", dist.Dirichlet(torch.full((V,), beta)))
        with pyro.plate("document", N, subsample=idx):
            eta = pyro.sample("eta", dist.Normal(lda.prior_loc, lda.prior_scale).to_event(1))
            probs = eta.softmax(-1) @ topics
            total = int(batch.sum(-1).max())
            pyro.sample("counts", dist.Multinomial(total, probs=probs), obs=batch)

    def guide(batch: torch.Tensor, idx: torch.Tensor) -> None:
        pyro.module("amortized_lda", lda)
        logits = pyro.param("topic_logits", lambda: _seed_topics(batch, K, V))
        log_prec = pyro.param(
            "topic_log_precision", lambda: torch.full((K,), float(np.log(100.0 * V)))
        )
        conc = log_prec.exp()[:, None] * logits.softmax(-1) + 1e-4
        with pyro.plate("topic", K):
            pyro.sample("topics", dist.Dirichlet(conc))
        with pyro.plate("document", N, subsample=idx):
            h = lda.encoder(batch / batch.sum(-1, keepdim=True).clamp_min(1.0))
            loc, s = h.chunk(2, -1)
            pyro.sample("eta", dist.Normal(loc, softplus(s) + 1e-3).to_event(1))

    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": cfg["lr"]}), pyro.infer.Trace_ELBO())
    rng = np.random.default_rng(SEED)
    perm, pos = rng.permutation(N), 0
    stamps: list[float] = []
    for _ in range(steps):
        if pos >= N:
            perm, pos = rng.permutation(N), 0
        idx = torch.as_tensor(perm[pos : pos + B])
        pos += B
        svi.step(data[idx], idx)
        stamps.append(time.perf_counter())
    return _rates(stamps, time.perf_counter() - t0, cfg)


def _rates(stamps: list[float], wall: float, cfg: dict) -> dict[str, float]:
    """docs/s from the median step time (robust to bursts of load) and from the mean."""
    steps = np.diff(stamps[cfg["skip"] - 1 :])
    return {
        "docs_s": cfg["batch"] / float(np.median(steps)),
        "docs_s_mean": cfg["batch"] / float(np.mean(steps)),
        "wall": wall,
    }


# ---------------------------------------------------------------- sections
def throughput(counts: np.ndarray, cfg: dict) -> tuple[list[str], dict[str, float]]:
    runs = {"ppgen": run_ppgen, "raw": run_raw}
    for name in ("ppgen", "raw"):  # untimed warm-up pair
        runs[name](counts, cfg, cfg["skip"] + 2)
    results: dict[str, list[dict]] = {"ppgen": [], "raw": []}
    ratios = []
    for rep in range(cfg["reps"]):
        order = ("ppgen", "raw") if rep % 2 == 0 else ("raw", "ppgen")
        pair = {name: runs[name](counts, cfg, cfg["steps"]) for name in order}
        for name in order:
            results[name].append(pair[name])
        ratios.append(pair["ppgen"]["docs_s"] / pair["raw"]["docs_s"])
        print(
            f"rep {rep} ({order[0]} first): ppgen {pair['ppgen']['docs_s']:.0f} docs/s, "
            f"raw {pair['raw']['docs_s']:.0f} docs/s, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    med = {
        name: {k: statistics.median(r[k] for r in results[name]) for k in results[name][0]}
        for name in results
    }
    ratio = statistics.median(ratios)
    lines = [THROUGHPUT_HEADER, "|" + "---|" * 5]
    for name, label in (("raw", "hand-written pyro.infer.SVI loop"), ("ppgen", "ppgen.fit SVI")):
        m = med[name]
        rel = f"{ratio:.3f} ({min(ratios):.3f}..{max(ratios):.3f})" if name == "ppgen" else "1.000"
        lines.append(
            f"| {label} | {m['docs_s']:.0f} | {m['docs_s_mean']:.0f} | {m['wall']:.2f} | {rel} |"
        )
    within = "yes" if ratio >= 0.95 else "NO"
    lines.append("")
    lines.append(
        f"ppgen/raw documents/s, median of {cfg['reps']} pairs: {ratio:.3f} "
        f"(goal >= 0.95: {within})"
    )
    return lines, {"ratio": ratio, **{f"{n}_docs_s": med[n]["docs_s"] for n in med}}


def scaling(cfg: dict, decoders: list[str]) -> tuple[list[str], list[dict[str, float]]]:
    D, K, V = cfg["scale_docs"], cfg["scale_topics"], cfg["scale_vocab"]
    held_n = max(D // 20, 10)
    counts, truth = simulate_lda(
        D + held_n,
        K,
        V,
        doc_length=cfg["doc_length"],
        alpha=cfg["alpha"],
        beta=cfg["beta"],
        seed=SEED + 1,
    )
    train, held = counts[:D], counts[D:]
    uni = (train.sum(0) + 0.5) / (train.sum() + 0.5 * V)
    unigram = float(np.exp(-(held * np.log(uni)).sum() / held.sum()))
    true_ppl = heldout_perplexity(
        truth["topics"], held, lambda c: fold_in(truth["topics"], c, cfg["alpha"])
    )
    lines = [SCALING_HEADER, "|" + "---|" * 12]
    rows = []
    for decoder in decoders:
        torch.manual_seed(SEED)
        lda = AmortizedLDA(V, K, hidden=cfg["hidden"], alpha=cfg["alpha"], decoder=decoder)
        pyro.clear_param_store()
        stamps: list[float] = []
        est = SVI(epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch"], num_draws=1)
        t0 = time.perf_counter()
        fit = ppgen.fit(
            lda,
            {"counts": train},
            est,
            seed=SEED,
            callbacks=[lambda step, metrics, s=stamps: s.append(time.perf_counter())],
        )
        wall = time.perf_counter() - t0
        steps = len(stamps)
        docs_s = cfg["batch"] * (steps - 1) / (stamps[-1] - stamps[0])
        tw = lda.topic_word(fit)
        perm, tv = hungarian_match(tw, truth["topics"], "tv")
        top_t = np.argsort(-truth["topics"], 1)[:, :10]
        top_f = np.argsort(-tw, 1)[:, :10]
        overlap = np.mean([len(set(top_t[k]) & set(top_f[perm[k]])) for k in range(K)])
        ppl = lda.perplexity(fit, held)
        row = {
            "wall": wall,
            "docs_s": docs_s,
            "tv_mean": float(tv.mean()),
            "tv_max": float(tv.max()),
            "overlap": float(overlap),
            "ppl": ppl,
        }
        rows.append(row)
        lines.append(
            f"| {decoder} | {D} | {cfg['epochs']} | {steps} | {wall:.1f} | {docs_s:.0f} | "
            f"{tv.mean():.3f} | {tv.max():.3f} | {overlap:.1f}/10 | {ppl:.1f} | "
            f"{true_ppl:.1f} | {unigram:.1f} |"
        )
        print(lines[-1], flush=True)
    return lines, rows


def profile(counts: np.ndarray, cfg: dict) -> list[str]:
    """cProfile of one ppgen run and one raw run (top functions by own time)."""
    out = []
    for name, fn in (("ppgen", run_ppgen), ("raw", run_raw)):
        prof = cProfile.Profile()
        prof.enable()
        fn(counts, cfg, cfg["steps"])
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        out += [f"--- cProfile: {name}, {cfg['steps']} steps ---", buf.getvalue()]
    return out


# ---------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--reps", type=int, default=None, help="interleaved pairs (default 7)")
    parser.add_argument("--steps", type=int, default=None, help="steps per throughput run")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the 10k-doc fit")
    parser.add_argument("--decoders", nargs="+", default=["mixture", "prodlda"])
    parser.add_argument("--profile", action="store_true", help="also cProfile one run of each")
    parser.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    q = args.quick
    cfg = {
        "docs": 300 if q else 10_000,
        "scale_docs": 300 if q else 10_000,
        "scale_topics": 4 if q else 10,
        "scale_vocab": 40 if q else 500,
        "topics": 4 if q else 20,
        "vocab": 40 if q else 1000,
        "doc_length": 30 if q else 100,
        "alpha": 0.3,
        "beta": 0.05,
        "hidden": 16 if q else 100,
        "batch": 32 if q else 256,
        "lr": 0.01,
        "steps": args.steps or (30 if q else 300),
        "skip": 5 if q else 20,
        "reps": args.reps or (1 if q else 7),
        "epochs": args.epochs or (2 if q else 40),
    }
    t0 = time.perf_counter()
    head = machine()
    print("\n".join(head), flush=True)
    counts, _ = simulate_lda(
        cfg["docs"],
        cfg["topics"],
        cfg["vocab"],
        doc_length=cfg["doc_length"],
        alpha=cfg["alpha"],
        beta=cfg["beta"],
        seed=SEED,
    )
    setup = (
        f"- corpus: simulate_lda, {cfg['docs']} documents x {cfg['doc_length']} tokens, "
        f"K={cfg['topics']}, V={cfg['vocab']}, alpha={cfg['alpha']}, beta={cfg['beta']}; "
        f"AmortizedLDA(hidden={cfg['hidden']}), mixture decoder, logistic-normal theta; "
        f"batch {cfg['batch']}, Adam lr {cfg['lr']}, Trace_ELBO"
    )
    print(setup)
    tp_lines, tp = throughput(counts, cfg)
    print("\n".join(tp_lines), flush=True)
    sc_lines, sc = scaling(cfg, args.decoders)
    print("\n".join(sc_lines))
    prof = profile(counts, cfg) if args.profile else []
    if prof:
        print("\n".join(prof))
    print(f"total benchmark time {time.perf_counter() - t0:.1f} s", flush=True)
    if args.write:
        text = [
            "",
            f"## Amortised LDA throughput and 10k-document fit "
            f"({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, bench_lda.py)",
            "",
            *head,
            setup,
            f"- throughput: {cfg['reps']} interleaved pairs x {cfg['steps']} steps, steps "
            f"{cfg['skip']}..{cfg['steps']} timed",
            f"- scaling: simulate_lda, {cfg['scale_docs']} training + {cfg['scale_docs'] // 20} "
            f"held-out documents x {cfg['doc_length']} tokens, K={cfg['scale_topics']}, "
            f"V={cfg['scale_vocab']}; {cfg['epochs']} epochs, same batch and lr; perplexity: "
            "document completion (half of each held-out document infers theta)",
            "",
            *tp_lines,
            "",
            *sc_lines,
            "",
        ]
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write("\n".join(text))
    return {"throughput": tp, "scaling": sc}


if __name__ == "__main__":
    main()
