"""mmer: multimodal multi-label emotion recognition from raw video (face, voice, words)."""

__version__ = "0.1.0"
