"""Corpus label recipes: list a corpus's media files with multi-hot targets and splits.

    listing = list_corpus("cremad", Path("CREMA-D/VideoFlash"))   # -> CorpusListing
    for clip in listing.clips: clip.path, clip.clip_id, clip.split, clip.labels  # labels (q,) float32

One registry (registry.py) holds every corpus; `corpus_names()` is built from it.
"""

from mmer.corpora.listing import CorpusListing, LabeledClip
from mmer.corpora.registry import CorpusOption, corpus_names, corpus_options, list_corpus

# Importing the recipes registers them.
from mmer.corpora import cremad, mosei_raw, ravdess  # noqa: E402,F401  isort: skip

__all__ = ["CorpusListing", "CorpusOption", "LabeledClip", "corpus_names", "corpus_options", "list_corpus"]
