"""`evaluate` and `robustness`: a trained detector scored on a labelled split, clean or under
perturbations: metrics, per-image scores, per-source tables and figures."""
