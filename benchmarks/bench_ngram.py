"""Fit time and peak memory of NGramLM against corpus size (synthetic Zipfian Markov text).

Usage, from the repository root: python -m benchmarks.bench_ngram [--sizes N ...] [--order 5]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from ppgen.models.ngram import NGramLM


def zipf_markov(n_tokens: int, vocab: int, rng: np.random.Generator) -> np.ndarray:
    """x_t = z_t after a reset (prob 1/2), else (x_{t-1} + z_t) mod V, with z_t ~ Zipf(1.3)."""
    z = np.minimum(rng.zipf(1.3, n_tokens), vocab) - 1
    reset = rng.random(n_tokens) < 0.5
    reset[0] = True
    csum = np.cumsum(z)
    start = np.maximum.accumulate(np.where(reset, np.arange(n_tokens), 0))
    return ((csum - csum[start] + z[start]) % vocab).astype(np.int64)


def measure(x: np.ndarray, vocab: int, order: int, learn: bool) -> tuple[float, float, NGramLM]:
    """Wall time (s) without tracing, then peak traced memory (MB) of a second fit."""
    t = time.perf_counter()
    NGramLM(order, learn_concentration=learn).fit(x, vocab_size=vocab)
    seconds = time.perf_counter() - t
    tracemalloc.start()
    lm = NGramLM(order, learn_concentration=learn).fit(x, vocab_size=vocab)
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return seconds, peak, lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=10_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"NGramLM(order={args.order}), V={args.vocab}, Zipf(1.3) Markov text")
    header = (
        f"{'tokens':>9} {'contexts':>9} {'n-grams':>9} {'count s':>8} {'fit s':>7} "
        f"{'us/token':>8} {'tables MB':>9} {'peak MB':>8} {'B/token':>7}"
    )
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        x = zipf_markov(n, args.vocab, rng)
        count_s, _, _ = measure(x, args.vocab, args.order, learn=False)
        fit_s, peak, lm = measure(x, args.vocab, args.order, learn=True)
        print(
            f"{n:>9} {sum(lm.num_contexts):>9} {sum(lm.num_ngrams):>9} {count_s:>8.2f} "
            f"{fit_s:>7.2f} {1e6 * fit_s / n:>8.2f} {lm.nbytes / 1e6:>9.1f} {peak:>8.1f} "
            f"{1e6 * peak / n:>7.0f}"
        )
    print("count s: counting only; fit s: counting + learning the concentrations (evidence).")


if __name__ == "__main__":
    main()
