"""Task pipelines: read → encode → (train) → decode → score."""
