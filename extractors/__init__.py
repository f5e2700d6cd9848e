"""Media -> feature sequences (face geometry, acoustic descriptors, word-piece embeddings).

Public API in `mmer.extractors.pipeline`: ExtractionSettings, FeatureExtractor, extract_features,
feature_spec_for. See docs/extractors.md.
"""

import os

# onnxruntime (faster-whisper's Silero voice-activity detector, extractors.voice_activity and
# extractors.speech) would otherwise write a device id under ~/.cache/Microsoft/DeveloperTools/ for
# its telemetry. It reads this switch when it loads, so it is set before any extractor module runs.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
