"""Train, compare and ship binary Real/Fake image classifiers."""

__version__ = "0.1.0"
