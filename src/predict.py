"""`python -m predict`: short for `deepfake-predict` / `python -m deepfake_detection.predict`.

A top-level module named `predict` loses to any installed package of the same name; the
`deepfake-predict` command and `python -m deepfake_detection.predict` always run this project's.
"""

from deepfake_detection.predict import cli

if __name__ == "__main__":
    cli()
