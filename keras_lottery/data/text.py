"""Text classification data: a word-index tokenizer fitted on the training split.

A ``tfds:NAME`` dataset whose input feature (``dataset.image_key``, e.g. ``text`` for
``tfds:imdb_reviews``) is text becomes token ids: each text is lower-cased, its HTML line
breaks dropped, and split into words (runs of letters, digits and apostrophes). The
``dataset.vocabulary_size - 2`` words most frequent in the training split (ties broken
alphabetically) get ids 2, 3, ...; id 1 is any other word and id 0 is padding. Each
text keeps its first ``dataset.sequence_length`` words, padded with 0 at the end. The
ids are integers used as given (never normalized), for a model that embeds them (the
built-in ``transformer``).

The vocabulary is fitted on the training split after the validation hold-out, so
neither the validation nor the test texts shape it. The run's fingerprint reads the raw
texts (their UTF-8 bytes) and labels, not the ids.
"""

import re
from collections import Counter

import numpy as np

PADDING, UNKNOWN = 0, 1
_WORD = re.compile(r"[a-z0-9']+")
_BREAK = re.compile(r"<br\s*/?>")


def words(text):
    """The words of one text (bytes or str), as the tokenizer reads them."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return _WORD.findall(_BREAK.sub(" ", text.lower()))


def vocabulary(texts, size):
    """``{word: id}`` of the ``size - 2`` most frequent words of ``texts`` (ids from 2)."""
    counts = Counter()
    for text in texts:
        counts.update(words(text))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: max(size - 2, 0)]
    return {word: index + 2 for index, (word, _) in enumerate(ranked)}


def encode(texts, index, length):
    """Token ids ``(len(texts), length)`` int32: the first ``length`` words, padded with 0."""
    ids = np.full((len(texts), length), PADDING, np.int32)
    for row, text in enumerate(texts):
        tokens = [index.get(word, UNKNOWN) for word in words(text)[:length]]
        ids[row, : len(tokens)] = tokens
    return ids


def raw_arrays(texts):
    """``(bytes, lengths)``: the UTF-8 bytes of every text, concatenated, and each one's length
    (what a fingerprint reads of texts)."""
    encoded = [t if isinstance(t, bytes) else str(t).encode("utf-8") for t in texts]
    return np.frombuffer(b"".join(encoded), np.uint8), np.asarray([len(t) for t in encoded], np.int64)
