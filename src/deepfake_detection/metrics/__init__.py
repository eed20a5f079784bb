"""What a detector's scores are worth: the metric definitions, thresholds and score tables.

Kept below models and training, which stream these metrics while fitting, so that nothing
under them has to import the evaluation layer above.
"""
