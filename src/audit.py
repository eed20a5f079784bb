"""`python -m audit`: short for `deepfake-audit` / `python -m deepfake_detection.audit`.

A top-level module named `audit` loses to any installed package of the same name; the
`deepfake-audit` command and `python -m deepfake_detection.audit` always run this project's.
"""

from deepfake_detection.audit import cli

if __name__ == "__main__":
    cli()
