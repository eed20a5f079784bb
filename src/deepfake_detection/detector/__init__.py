"""A trained detector: loading it from a run, a checkpoint or an exported file, and scoring
images with it. Evaluate, robustness, predict, export and serve all start here."""
