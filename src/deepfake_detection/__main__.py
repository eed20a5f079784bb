"""`python -m deepfake_detection`: the table of commands."""

from deepfake_detection.commands import table

print(table())
