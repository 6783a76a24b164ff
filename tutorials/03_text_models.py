"""Tutorial 3: text models: a Bayesian n-gram language model and LDA topics on a small corpus.

The corpus (``ppgen/data/corpora/four_topics.txt``, written for ppgen, public domain) has
paragraphs about four subjects: the sea, gardens, the night sky and cooking.

* ``NGramLM`` (hierarchical Dirichlet backoff, concentrations learnt by evidence) at the
  character level for orders 1..4: held-out perplexity on the last paragraphs of each
  subject, and a sample continuing a prompt.
* The same n-gram model through ``ppgen.fit``: ``method="exact"`` (closed-form posterior)
  and ``"map"`` over the concentrations, turned back into language models by
  ``NGramLM.from_fit``.
* Classic ``LDA`` (token-topic assignments summed out) fit by mean-field SVI on the
  bag of words of the paragraphs, stop words removed: top words per topic, NPMI coherence,
  and a bar chart of the top words per topic in ``DIR/topics.png``.

Run:  python tutorials/03_text_models.py [--tiny] [--out runs/tutorial03]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--out", default="runs/tutorial03", help="output directory for PNGs")
    args = parser.parse_args(argv)

    import matplotlib.pyplot as plt
    import torch

    torch.set_num_threads(1)  # a small model: threads only add overhead
    import numpy as np

    import ppgen
    from ppgen.analysis.metrics import npmi_coherence, top_words
    from ppgen.data.builtin import four_topics, four_topics_paragraphs
    from ppgen.data.text import Tokenizer, token_sequences
    from ppgen.models.lda import LDA
    from ppgen.models.ngram import NGramLM

    paragraphs = four_topics_paragraphs()
    held = set(range(5, len(paragraphs), 6))  # the last paragraph of each subject
    train = [p.lower() for i, p in enumerate(paragraphs) if i not in held]
    test = [p.lower() for i, p in enumerate(paragraphs) if i in held]
    print(f"{len(paragraphs)} paragraphs: {len(train)} to train, {len(test)} held out")

    # 1. n-gram language model ------------------------------------------------------------
    tok = Tokenizer.from_text(train, level="char", bos=True, eos=True)
    perplexities = {}
    for order in (1, 2, 3, 4):
        lm = NGramLM(order=order, tokenizer=tok).fit(train)
        perplexities[order] = lm.perplexity(test)
        alpha = np.round(lm.concentration, 2).tolist()
        print(f"order {order}: held-out perplexity {perplexities[order]:6.3f}  alpha {alpha}")
    text = lm.sample(120, prompt="the ship ", rng=np.random.default_rng(0))
    print(f"sample (order 4): 'the ship {text}'")

    # the same model through ppgen.fit: the exact conjugate posterior (concentrations learnt
    # by evidence, as above) and MAP over the concentrations with Adam; NGramLM.from_fit
    # turns either fit back into a language model (its posterior predictive)
    tokens = {"tokens": token_sequences(train, tok)}
    exact = ppgen.fit(NGramLM(order=2, tokenizer=tok), tokens, method="exact")
    map_ = ppgen.fit(
        NGramLM(order=2, tokenizer=tok), tokens, ppgen.inference.MLE(lr=0.05, steps=300)
    )
    for name, f in (("exact", exact), ("map", map_)):
        alpha = [round(float(f.draws[f"alpha_{k}"].mean()), 2) for k in range(2)]
        ppl = NGramLM.from_fit(f).perplexity(test)
        print(f"ppgen.fit {name:5s} (order 2): held-out perplexity {ppl:6.3f}  alpha {alpha}")

    # 2. LDA on the bag of words of the paragraphs ----------------------------------------
    corpus = four_topics(with_vocab=True)
    counts, vocab = corpus["counts"], corpus["truth"]["vocab"]
    K = 4
    lda = LDA(K, len(vocab), alpha=0.3, beta=0.1)
    est = ppgen.inference.SVI(steps=400 if args.tiny else 3000, lr=0.05, num_draws=20)
    fit = ppgen.fit(lda, {"counts": counts}, est, backend="pyro", seed=0)
    phi = lda.topic_word(fit)
    npmi = npmi_coherence(phi, counts, top_n=5)
    print(
        f"LDA: {counts.shape[0]} documents, {len(vocab)} words; perplexity "
        f"{lda.perplexity(fit):.1f} (uniform would be {len(vocab)})"
    )
    for k, words in enumerate(top_words(phi, vocab, n=8)):
        print(f"topic {k}: NPMI {npmi[k]:+.2f}  {' '.join(words)}")
    print(f"mean NPMI {npmi.mean():+.3f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, K, figsize=(3 * K, 3.2))
    for k, ax in enumerate(axes):
        idx = np.argsort(-phi[k])[:8][::-1]
        ax.barh([vocab[i] for i in idx], phi[k, idx], color=f"C{k}")
        ax.set_title(f"topic {k} (NPMI {npmi[k]:+.2f})", fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(out / "topics.png", dpi=90)
    plt.close("all")
    print(f"wrote {out / 'topics.png'}")
    return {"perplexity": perplexities, "npmi": npmi}


if __name__ == "__main__":
    main()
