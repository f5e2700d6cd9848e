"""mmer: multimodal multi-label emotion recognition from raw video (face, voice, words)."""

from mmer_core import __version__

__all__ = ["__version__"]
