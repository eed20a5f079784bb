"""`python -m evaluate`: short for `deepfake-evaluate` / `python -m deepfake_detection.evaluate`.

A top-level module named `evaluate` loses to any installed package of the same name; the
`deepfake-evaluate` command and `python -m deepfake_detection.evaluate` always run this project's.
"""

from deepfake_detection.evaluate import cli

if __name__ == "__main__":
    cli()
