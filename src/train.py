"""`python -m train [overrides]`: train a detector, then test its best checkpoint.

The same command as `deepfake-train` and `python -m deepfake_detection.train`.
"""

from deepfake_detection.train import cli

if __name__ == "__main__":
    cli()
