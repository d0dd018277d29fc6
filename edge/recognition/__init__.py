"""The recognition engine, pure compute: detectors, alignment, quality, embeddings, tracks, pipeline, galleries."""
