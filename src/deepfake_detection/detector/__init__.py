"""A trained detector: loading it from a run, a checkpoint or an exported file, and scoring
images with it."""
