"""Media -> feature sequences (face geometry, acoustic descriptors, word-piece embeddings).

Public API in `extractors.pipeline`: ExtractionSettings, FeatureExtractor, extract_features,
feature_spec_for. See docs/extractors.md.
"""
