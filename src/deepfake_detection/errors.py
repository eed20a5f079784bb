"""Errors caused by the user's input, reported as one line instead of a traceback."""

from __future__ import annotations


class UserInputError(Exception):
    """Base class for mistakes the user can fix: a bad config value, path or dataset."""


class ConfigError(UserInputError):
    """A config key has a value that cannot work."""


class DatasetError(UserInputError):
    """The dataset on disk does not have the layout or content we need."""


class WeightsError(UserInputError):
    """Pretrained weights could not be downloaded or loaded."""


def find_user_error(exc: BaseException | None) -> UserInputError | None:
    """Return the user error behind `exc`, if any.

    Hydra's `instantiate` wraps whatever a constructor raises, so the error we raised
    ourselves may sit a few links down the cause chain.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserInputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
