"""LDA against truth: topic recovery (classic SVI, NUTS, amortised), outputs and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from ppgen.analysis.metrics import hungarian_match, npmi_coherence
from ppgen.data.text import BagOfWords, TokenSequences
from ppgen.errors import DataError
from ppgen.models.lda import LDA, AmortizedLDA, as_counts, simulate_lda

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


@pytest.mark.parametrize("model", [LDA(2, 3), AmortizedLDA(3, 2, hidden=4)])
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
