"""LDA against truth: topic recovery (classic SVI, NUTS, amortised), outputs and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from ppgen.analysis.metrics import hungarian_match, npmi_coherence
from ppgen.data.text import BagOfWords, TokenSequences
from ppgen.errors import DataError
from ppgen.models.lda import (
    LDA,
    AmortizedLDA,
    as_counts,
    fold_in,
    heldout_perplexity,
    simulate_lda,
)

TV_MAX = 0.15  # total-variation distance between each matched fitted and true topic


@pytest.fixture(scope="module")
def corpus():
    return simulate_lda(150, 3, 30, doc_length=60, alpha=0.3, beta=0.1, seed=0)


def test_classic_lda_svi_recovers_topics(corpus):
    counts, truth = corpus
    lda = LDA(3, 30, alpha=0.3)
    est = ppgen.inference.SVI(steps=200, lr=0.08, num_draws=10)
    fit = ppgen.fit(lda, {"counts": counts}, est, backend="pyro")
    perm, tv = hungarian_match(lda.topic_word(fit), truth["topics"], "tv")
    assert tv.max() < TV_MAX
    theta = lda.doc_topics(fit)[:, perm]
    assert np.abs(theta - truth["doc_topics"]).mean() < 0.1
    train, held = lda.perplexity(fit), lda.perplexity(fit, counts[:40])
    assert 1.0 < train < 30 and 1.0 < held < 30  # uniform over the vocabulary would be 30
    assert np.all(npmi_coherence(lda.topic_word(fit), counts, top_n=5) > 0.0)
    idata = lda.to_arviz(fit, posterior_predictive=False)
    assert idata.posterior["topics"].dims == ("chain", "draw", "topic", "vocab")
    assert idata.posterior["doc_topics"].dims == ("chain", "draw", "document", "topic")


@pytest.mark.slow
def test_classic_lda_nuts_recovers_topics():
    counts, truth = simulate_lda(20, 2, 10, doc_length=100, alpha=0.3, beta=0.5, seed=1)
    lda = LDA(2, 10, alpha=0.3, beta=0.5)
    est = ppgen.inference.NUTS(num_samples=60, num_warmup=60)
    fit = ppgen.fit(lda, {"counts": counts}, est, backend="pyro")
    _, tv = hungarian_match(lda.topic_word(fit), truth["topics"], "tv")
    assert tv.max() < TV_MAX


def test_amortized_lda_minibatch_svi_recovers_topics(corpus):
    counts, truth = corpus
    lda = AmortizedLDA(30, 3, hidden=32)
    est = ppgen.inference.SVI(steps=300, lr=0.05, batch_size=50, num_draws=4)
    fit = ppgen.fit(lda, {"counts": counts}, est)
    _, tv = hungarian_match(lda.topic_word(fit), truth["topics"], "tv")
    assert tv.max() < TV_MAX
    assert lda.doc_topics(fit, counts[:5]).shape == (5, 3)
    assert 1.0 < lda.perplexity(fit, counts[:40]) < 30


def test_prodlda_decoder_beats_unigram_and_finds_the_topics_top_words():
    # ProdLDA's product of experts is not LDA's mixture, so its topics cannot equal the true
    # ones; what must hold: near-true held-out perplexity and the true topics' top words.
    counts, truth = simulate_lda(200, 3, 30, doc_length=60, alpha=0.3, beta=0.1, seed=0)
    train, held = counts[:150], counts[150:]
    lda = AmortizedLDA(30, 3, hidden=32, alpha=0.3, decoder="prodlda")
    est = ppgen.inference.SVI(steps=400, lr=0.02, batch_size=50, num_draws=2)
    fit = ppgen.fit(lda, {"counts": train}, est)
    assert "topics" not in fit.draws and fit.draws["eta"].shape == (1, 2, 150, 3)
    unigram = (train.sum(0) + 0.5) / (train.sum() + 0.5 * 30)
    unigram_ppl = np.exp(-(held * np.log(unigram)).sum() / held.sum())  # 12.9
    true_ppl = heldout_perplexity(truth["topics"], held, lambda c: fold_in(truth["topics"], c, 0.3))
    ppl = lda.perplexity(fit, held)  # 9.3 measured; the true model's is 8.8
    assert ppl < 1.1 * true_ppl < 0.8 * unigram_ppl
    tw = lda.topic_word(fit)
    np.testing.assert_allclose(tw.sum(1), 1.0, rtol=1e-5)
    perm, tv = hungarian_match(tw, truth["topics"], "tv")
    assert tv.max() < 0.3  # 0.21 measured; unmatched topics are ~0.9 apart
    top_true = np.argsort(-truth["topics"], 1)[:, :5]
    top_fit = np.argsort(-tw, 1)[:, :5]
    for k in range(3):  # 4 of 5 measured for every topic
        assert len(set(top_true[k]) & set(top_fit[perm[k]])) >= 3
    theta = lda.doc_topics(fit, held)
    assert theta.shape == (50, 3) and np.allclose(theta.sum(1), 1.0, atol=1e-5)


def test_amortized_lda_options():
    counts, _ = simulate_lda(30, 2, 8, doc_length=20, seed=1)
    lda = AmortizedLDA(8, 2, hidden=8, theta="dirichlet", decoder="prodlda")
    fit = ppgen.fit(lda, {"counts": counts}, ppgen.inference.SVI(steps=3, num_draws=2))
    assert fit.draws["doc_topics"].shape == (1, 2, 30, 2)
    assert lda.word_probs(fit, np.full((4, 2), 0.5)).shape == (4, 8)
    assert "decoder='prodlda'" in repr(lda)
    with pytest.raises(ValueError, match="`batchnorm=True` needs `decoder='prodlda'`"):
        AmortizedLDA(8, 2, batchnorm=True)
    with pytest.raises(ValueError, match=r"`decoder` must be one of \['mixture', 'prodlda'\]"):
        AmortizedLDA(8, 2, decoder="product")


def test_containers_convert_to_counts():
    seqs = TokenSequences([np.array([0, 1, 1]), np.array([2])], vocab_size=4)
    assert as_counts(seqs).tolist() == [[1, 2, 0, 0], [0, 0, 1, 0]]
    bow = BagOfWords(np.array([[1, 0], [0, 2]]), vocab=["a", "b"])
    assert as_counts(bow, 2).tolist() == [[1, 0], [0, 2]]


@pytest.mark.parametrize(
    "data, match",
    [
        (np.array([[1, -1, 0], [1, 1, 1]]), "negative"),
        (np.array([[1.5, 1, 0], [1, 1, 1]]), "whole numbers"),
        (np.array([[1, 0, 0], [0, 0, 0]]), "empty"),
        (TokenSequences([np.array([0.5, 1.0])], vocab_size=3), "integers"),
        (TokenSequences([np.array([0, 7])], vocab_size=3), "outside the vocabulary"),
        (TokenSequences([np.array([0]), np.array([], np.int64)], vocab_size=3), "empty"),
    ],
)
def test_bad_corpora_raise_named_errors(data, match):
    with pytest.raises(DataError, match="`counts`") as e:
        as_counts(data, 3)
    assert match in str(e.value)


@pytest.mark.parametrize(
    "model", [LDA(2, 3), AmortizedLDA(3, 2, hidden=4), AmortizedLDA(3, 2, decoder="prodlda")]
)
@pytest.mark.parametrize(
    "counts, match",
    [
        (np.array([[1, 2, 0], [1, 0, 0]]) * 1.5, "whole"),
        (np.array([[1, 2], [1, 0]]), "shape"),
        (np.array([[1, 0, 0], [0, 0, 0]]), "empty"),
    ],
)
def test_model_validation_names_counts(model, counts, match):
    with pytest.raises(DataError, match="`counts`"):
        ppgen.fit(model, {"counts": counts}, ppgen.inference.SVI(steps=1, num_draws=1))


def test_evaluate_reports_lda_perplexity():
    """ppgen.evaluate reads LDA's declared metric: the training perplexity per word, below the
    vocabulary size (a uniform model's) for a fit that found the topics."""
    import ppgen
    from ppgen.models.lda import LDA

    counts = ppgen.data.load("four_topics")["counts"]
    lda = LDA(4, counts.shape[1])
    fit = ppgen.fit(lda, {"counts": counts}, ppgen.inference.SVI(steps=300, lr=0.05, num_draws=10))
    ev = ppgen.evaluate(fit)
    assert ev["perplexity"] == pytest.approx(lda.perplexity(fit), rel=1e-12)
    assert ev["perplexity"] < 0.8 * counts.shape[1]
