"""The `train` command: fitting (fit.py), its callbacks, stopping and resuming, the
frozen-feature fit, testing the best checkpoint, and the artifacts a run writes."""
