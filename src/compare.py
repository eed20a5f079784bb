"""`python -m compare`: short for `deepfake-compare` / `python -m deepfake_detection.compare`.

A top-level module named `compare` loses to any installed package of the same name; the
`deepfake-compare` command and `python -m deepfake_detection.compare` always run this project's.
"""

from deepfake_detection.compare import cli

if __name__ == "__main__":
    cli()
