"""Everything that scores a trained detector: metrics, thresholds, predictions and figures."""
