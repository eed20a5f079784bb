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


def one_line(error: UserInputError) -> str:
    """The message of `error` on one line.

    An error raised in a DataLoader worker comes back with the worker's traceback folded
    into its message; its last line is the original message, prefixed by the class name.
    """
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(error).__name__
    last = lines[-1]
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    return last.removeprefix(prefix)
