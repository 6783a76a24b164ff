"""Tests for ppgen.models.ngram: closed-form predictive, perplexity, learnt concentrations."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from scipy.special import gammaln

from ppgen.data.text import DataError, Tokenizer
from ppgen.models.ngram import NGramLM

ALPHA = [6.0, 2.0, 1.0]  # alpha_0 = V makes the unigram base measure add 1 to each count


def reference_predictive(tokens: list[int], V: int, alpha: list[float], context: tuple) -> list:
    """p(. | context) by the recursion, written with Counters and loops."""
    p = None
    for k in range(len(context) + 1):
        u = tuple(context[len(context) - k :])
        c = Counter(tuple(tokens[t - k : t + 1]) for t in range(k, len(tokens)))
        c_u = {w: c[u + (w,)] for w in range(V)}
        tot = sum(c_u.values())
        base = [1.0 / V] * V if p is None else p
        p = [(c_u[w] + alpha[k] * base[w]) / (tot + alpha[k]) for w in range(V)]
    return p


@pytest.mark.parametrize("order", [2, 3])
def test_predictive_is_closed_form_abracadabra(order):
    lm = NGramLM(order, concentration=ALPHA[:order], learn_concentration=False).fit("abracadabra")
    tok = lm.tokenizer
    assert tok.vocab == ["<unk>", "a", "b", "r", "c", "d"]
    ids, V = tok.encode("abracadabra").tolist(), 6
    # By hand: p0 = (c(w) + 1) / 17 with c = (0, 5, 2, 2, 1, 1).
    np.testing.assert_allclose(lm.predictive(""), np.array([1, 6, 3, 3, 2, 2]) / 17, rtol=1e-12)
    # c(a, .) = 4 with c(a, b) = 2: p(b | a) = (2 + 2 * 3/17) / (4 + 2) = 20/51.
    assert lm.predictive("a")[2] == pytest.approx(float(Fraction(20, 51)), rel=1e-12)
    if order == 3:
        # "ra" is followed once, by c: p(c | ra) = (1 + 1 * p(c | a)) / 2, p(c | a) = 7/34.
        assert lm.predictive("ra")[4] == pytest.approx(float(Fraction(41, 68)), rel=1e-12)
    contexts = [(), (1,), (3,), (0,), (3, 1), (1, 2), (5, 5), (2, 4), (4, 1, 2)]
    for ctx in contexts:
        ref = reference_predictive(ids, V, ALPHA, ctx[max(0, len(ctx) - order + 1) :])
        np.testing.assert_allclose(lm.predictive(list(ctx)), ref, rtol=1e-12)
    # Pointwise log-likelihood: token t is predicted from its (up to) n-1 predecessors.
    expected = [
        np.log(reference_predictive(ids, V, ALPHA, tuple(ids[max(0, t - order + 1) : t]))[w])
        for t, w in enumerate(ids)
    ]
    np.testing.assert_allclose(lm.pointwise_log_prob("abracadabra"), expected, rtol=1e-12)
    assert lm.log_prob("abracadabra") == pytest.approx(sum(expected), rel=1e-12)


def test_predictive_normalised_on_seen_and_unseen_contexts():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 30, size=2000)
    lm = NGramLM(order=4).fit(x, vocab_size=30)
    seen = [x[t - 3 : t] for t in rng.integers(3, x.size, size=20)]
    unseen = [rng.integers(0, 30, size=3) for _ in range(20)] + [[], [7], [29, 29, 29, 29, 29]]
    for ctx in seen + unseen:
        p = lm.predictive(ctx)
        assert p.shape == (30,) and np.all(p > 0)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
    # The pointwise log-likelihood of a token is log of the predictive at its context.
    lp = lm.pointwise_log_prob(x[:200])
    for t in [0, 1, 2, 3, 57, 199]:
        assert lp[t] == pytest.approx(np.log(lm.predictive(x[max(0, t - 3) : t])[x[t]]), rel=1e-12)


def markov_chain(V: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A random second-order chain and its entropy rate (nats per token)."""
    P = rng.dirichlet(np.full(V, 0.5), size=V * V)  # P[a * V + b, c] = p(c | a, b)
    T = np.zeros((V * V, V * V))
    for s in range(V * V):
        T[s, (s % V) * V + np.arange(V)] = P[s]
    pi = np.full(V * V, 1.0 / V**2)
    for _ in range(2000):
        pi = pi @ T
    return P, float(-(pi * (P * np.log(P)).sum(1)).sum())


def run_chain(P: np.ndarray, n_chains: int, length: int, rng: np.random.Generator) -> np.ndarray:
    V = P.shape[1]
    x = np.zeros((n_chains, length), np.int64)
    x[:, :2] = rng.integers(0, V, (n_chains, 2))
    cdf = np.cumsum(P, axis=1)
    for t in range(2, length):
        u = rng.random((n_chains, 1))
        x[:, t] = np.minimum((cdf[x[:, t - 2] * V + x[:, t - 1]] < u).sum(1), V - 1)
    return x


def test_perplexity_approaches_entropy_rate():
    rng = np.random.default_rng(0)
    P, entropy_rate = markov_chain(8, rng)
    train, test = run_chain(P, 500, 400, rng), run_chain(P, 200, 400, rng)
    trigram = NGramLM(order=3).fit(list(train), vocab_size=8)
    unigram = NGramLM(order=1).fit(list(train), vocab_size=8)
    # Drop each document's first two tokens, whose contexts are shorter than the chain's.
    nll = -trigram.pointwise_log_prob(list(test)).reshape(200, 400)[:, 2:].mean()
    assert abs(nll - entropy_rate) < 0.02  # nats per token: perplexity within 2% of exp(H)
    assert trigram.perplexity(list(test)) < 0.8 * unigram.perplexity(list(test))


def hierarchical_dirichlet(alpha, V: int, n_chains: int, length: int, rng) -> np.ndarray:
    """Sequences from theta_0 ~ Dir(alpha_0 / V), theta_u ~ Dir(alpha_|u| theta_parent(u))."""
    thetas = [rng.dirichlet(np.full(V, alpha[0] / V))[None]]
    for k in range(1, len(alpha)):
        parent = np.arange(V**k) % V ** (k - 1)  # context id sum_j x_{t-j} V^{j-1}, drop oldest
        thetas.append(np.stack([rng.dirichlet(alpha[k] * b) for b in thetas[-1][parent]]))
    x = np.zeros((n_chains, length), np.int64)
    for t in range(length):
        k, state = min(t, len(alpha) - 1), np.zeros(n_chains, np.int64)
        for j in range(k, 0, -1):
            state = state * V + x[:, t - j]
        cdf = np.cumsum(thetas[k][state], axis=1)
        x[:, t] = np.minimum((cdf < rng.random((n_chains, 1)) * cdf[:, -1:]).sum(1), V - 1)
    return x


def test_learnt_unigram_concentration():
    rng = np.random.default_rng(0)
    theta = rng.dirichlet(np.full(500, 200.0 / 500))
    lm = NGramLM(order=1).fit(rng.choice(500, size=200_000, p=theta), vocab_size=500)
    assert 1 / 1.25 < lm.concentration[0] / 200.0 < 1.25


def test_learnt_bigram_concentration_and_optimum():
    rng = np.random.default_rng(0)
    alpha = np.array([40.0, 8.0])
    x = hierarchical_dirichlet(alpha, 40, 1000, 200, rng)
    lm = NGramLM(order=2).fit(list(x), vocab_size=40)
    # alpha_1 is seen through 40 contexts; alpha_0 only through one draw of theta_0 (and the
    # unigram counts follow the chain's stationary law, not theta_0), so it is not checked.
    assert 1 / 1.3 < lm.concentration[1] / alpha[1] < 1.3
    best = lm.log_evidence()
    for k in range(2):
        for factor in (0.95, 1.05):
            moved = lm.concentration.copy()
            moved[k] *= factor
            assert lm.log_evidence(moved)[k] < best[k]


def test_map_prior_shrinks_concentration():
    x = np.random.default_rng(0).integers(0, 5, size=300)
    ml = NGramLM(order=2).fit(x, vocab_size=5).concentration
    map_ = NGramLM(order=2, prior=(1.0, 1.0)).fit(x, vocab_size=5).concentration
    assert np.all(map_ < ml)


def test_stored_contexts_are_the_distinct_contexts():
    rng = np.random.default_rng(2)
    docs = [rng.integers(0, 6, size=n) for n in (50, 3, 1, 400, 120)]
    lm = NGramLM(order=5, learn_concentration=False).fit(docs, vocab_size=6)
    for k in range(5):
        ctx = {tuple(d[t - k : t]) for d in docs for t in range(k, d.size)}
        grams = {tuple(d[t - k : t + 1]) for d in docs for t in range(k, d.size)}
        assert lm.num_contexts[k] == len(ctx)
        assert lm.num_ngrams[k] == len(grams)
    # Memory: one key and one total per context, one key and one count per n-gram.
    assert lm.nbytes == 16 * (sum(lm.num_contexts) + sum(lm.num_ngrams))


def test_pyro_program_matches_evidence():
    import torch
    from pyro import poutine

    lm = NGramLM(order=3).fit("abracadabra alakazam " * 5)
    counts = lm.dense_counts()
    data = {k: torch.as_tensor(v) for k, v in counts.items()}
    alpha = {
        f"alpha_{k}": torch.tensor(a, dtype=torch.float64) for k, a in enumerate(lm.concentration)
    }
    trace = poutine.trace(poutine.condition(lm.model, alpha)).get_trace(**data)
    trace.compute_log_prob()
    evidence = lm.log_evidence()
    for k in range(3):
        c = counts[f"counts_{k}"]
        multinomial_coef = (gammaln(c.sum(1) + 1) - gammaln(c + 1).sum(1)).sum()
        logp = trace.nodes[f"counts_{k}"]["log_prob_sum"].item() - multinomial_coef
        assert logp == pytest.approx(evidence[k], rel=1e-10)


def test_sample_text_and_distribution():
    lm = NGramLM(order=3).fit("abracadabra " * 30)
    text = lm.sample(30, prompt="abr", rng=np.random.default_rng(0))
    assert isinstance(text, str) and len(text) == 30 and "<unk>" not in text
    assert lm.sample(6, prompt="abrac", temperature=0.0) == "adabra"  # greedy: the corpus
    # Frequencies of a sampled token match the predictive (4000 draws: sd <= 0.008).
    rng = np.random.default_rng(1)
    ids_lm = NGramLM(order=2).fit(rng.integers(0, 4, size=400), vocab_size=4)
    draws = np.concatenate([ids_lm.sample(1, prompt=[3], rng=rng) for _ in range(4000)])
    assert draws.dtype == np.int64
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, ids_lm.predictive([3]), atol=0.03)


def test_bos_eos_sampling_stops():
    tok = Tokenizer.from_text(["ab", "ba"], level="char", bos=True, eos=True)
    lm = NGramLM(order=2, tokenizer=tok).fit(["ab", "ba", "ab"])
    text = lm.sample(50, rng=np.random.default_rng(0))
    assert 1 <= len(text) <= 50 and set(text) <= {"a", "b"}  # <eos> ends; never <bos>/<unk>


def test_bos_is_context_only():
    tok = Tokenizer.from_text(["ab", "ba"], level="char", bos=True)
    lm = NGramLM(order=2, concentration=1.0, learn_concentration=False, tokenizer=tok)
    lm.fit(["ab", "ba", "ab"])  # ids: <unk> 0, <bos> 1, a 2, b 3
    assert lm.num_ngrams == [2, 4]  # unigrams a, b; bigrams <bos>a, <bos>b, ab, ba
    assert lm.predictive([])[1] == pytest.approx(0.25 / 7, rel=1e-12)  # c(<bos>) = 0
    lp = lm.pointwise_log_prob("ab")  # scores a | <bos> and b | a, not <bos> itself
    assert lp.shape == (2,)
    assert lp[0] == pytest.approx(np.log((2 + (3.25 / 7)) / 4), rel=1e-12)


def test_documents_shorter_than_the_order():
    lm = NGramLM(order=3).fit([np.array([0]), np.array([1, 0])], vocab_size=2)
    assert lm.num_contexts == [1, 1, 0]
    lp = lm.pointwise_log_prob(np.array([0, 1, 0, 1]))
    assert np.all(np.isfinite(lp))
    expected = [lm.predictive([0, 1])[0], lm.predictive([1, 0])[1]]
    np.testing.assert_allclose(lp[2:], np.log(expected), rtol=1e-12)


def test_bad_inputs_name_the_argument():
    lm = NGramLM(order=2).fit(np.array([0, 1, 2, 1, 0]), vocab_size=3)
    with pytest.raises(
        DataError,
        match=r"`tokens`: document 0, position 1 holds token id 3, "
        r"outside the vocabulary of size 3",
    ):
        lm.log_prob(np.array([0, 3]))
    with pytest.raises(DataError, match=r"`tokens`: document 0, position 0 holds 0\.5"):
        lm.log_prob(np.array([0.5, 1.0]))
    with pytest.raises(DataError, match=r"`tokens`: documents \[1\] are empty"):
        NGramLM(order=2).fit([np.array([0, 1]), np.array([], np.int64)], vocab_size=2)
    with pytest.raises(ValueError, match="`order` must be an int >= 1"):
        NGramLM(order=0)
    with pytest.raises(ValueError, match="`concentration` must be finite and > 0"):
        NGramLM(order=2, concentration=[1.0, -1.0])
    with pytest.raises(ValueError, match="`temperature` must be >= 0"):
        lm.sample(3, temperature=-1.0)
    with pytest.raises(ValueError, match="needs a model fitted on text"):
        lm.sample(3, prompt="ab")
    with pytest.raises(RuntimeError, match="not fitted"):
        NGramLM().perplexity([0, 1])


def test_evaluate_reports_the_language_models_held_out_perplexity():
    """ppgen.evaluate reads NGramLM's declared metrics: held-out perplexity equals the
    posterior-predictive language model's own, and 2 ** bits_per_token."""
    import ppgen

    train = "the ship sailed on the sea and the crew sang. " * 6
    held = "the crew sailed on the sea."
    fit = ppgen.fit(NGramLM(3), {"tokens": train}, "exact")
    ev = ppgen.evaluate(fit, {"tokens": held})
    want = NGramLM.from_fit(fit).perplexity(held)
    assert ev["perplexity"] == pytest.approx(want, rel=1e-12)
    assert ev["perplexity"] == pytest.approx(2 ** ev["bits_per_token"], rel=1e-12)
    train_ppl = ppgen.evaluate(fit)["perplexity"]  # training text: lower than held out
    assert 1.0 < train_ppl < ev["perplexity"] < NGramLM.from_fit(fit).vocab_size
