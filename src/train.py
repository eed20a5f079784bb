"""`python -m train [overrides]`: train a detector, then test its best checkpoint.

The same command as `deepfake-train` and `python -m deepfake_detection.train`.
"""

from deepfake_detection.commands import TRAIN

if __name__ == "__main__":
    TRAIN.cli()
