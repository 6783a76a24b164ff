"""Text, ids and documents as the token sequences and contexts of ``NGramLM`` (private)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ppgen.data.text import Tokenizer, TokenSequences

if TYPE_CHECKING:
    from ppgen.models.ngram import NGramLM

__all__ = ["TokensLike", "context_ids", "to_sequences"]

TokensLike = str | Sequence[str] | np.ndarray | Sequence[np.ndarray] | TokenSequences


def to_sequences(
    lm: NGramLM, tokens: TokensLike, site: str, vocab_size: int | None = None
) -> TokenSequences:
    """`tokens` as validated :class:`TokenSequences`, encoding text with ``lm``'s tokenizer
    (built from the text when ``lm`` has none)."""
    if hasattr(tokens, "detach"):  # a torch tensor, as ppgen.fit hands data over
        tokens = tokens.detach().cpu().numpy()
    if isinstance(tokens, str) or (
        isinstance(tokens, list | tuple) and tokens and all(isinstance(t, str) for t in tokens)
    ):
        docs = [tokens] if isinstance(tokens, str) else list(tokens)
        if lm.tokenizer is None:
            lm.tokenizer = Tokenizer.from_text(docs, lm.level, lm.min_count)
        seqs = TokenSequences([lm.tokenizer.encode(d) for d in docs], len(lm.tokenizer))
    elif isinstance(tokens, TokenSequences):
        seqs = tokens
    else:
        if isinstance(tokens, np.ndarray):
            docs = [tokens] if tokens.ndim <= 1 else list(tokens)
        else:
            docs = list(tokens)
            docs = [np.asarray(docs)] if all(np.ndim(t) == 0 for t in docs) else docs
        sizes = [np.max(d) for d in docs if np.size(d)]
        size = vocab_size or lm.vocab_size or (int(max(sizes)) + 1 if sizes else 1)
        seqs = TokenSequences(docs, size)
    if lm.vocab_size and seqs.vocab_size != lm.vocab_size:
        raise ValueError(
            f"`{site}` has a vocabulary of {seqs.vocab_size} ids but the model was fitted "
            f"with {lm.vocab_size}; encode it with the model's tokenizer."
        )
    return seqs.validate(site)


def context_ids(lm: NGramLM, context: str | Sequence[int] | np.ndarray) -> np.ndarray:
    """A prompt or context as ids of ``lm``'s vocabulary (text without ``<bos>``/``<eos>``)."""
    if isinstance(context, str):
        if lm.tokenizer is None:
            raise ValueError("a text `prompt`/`context` needs a model fitted on text.")
        return lm.tokenizer.encode(context, add_special=False)
    ids = np.asarray(context).ravel()
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"`context` must be text or integer ids, got dtype {ids.dtype}.")
    ids = ids.astype(np.int64)
    if np.any((ids < 0) | (ids >= lm.vocab_size)):
        raise ValueError(f"`context` ids must lie in 0..{lm.vocab_size - 1}, got {ids}.")
    return ids
