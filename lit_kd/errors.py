"""Configuration and data errors as one line: every lit-kd command reports them the same way."""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

#: Set to ``1`` to see the full traceback of a configuration or data error instead of its one-line message.
TRACEBACK_ENVIRONMENT_VARIABLE = "LIT_KD_TRACEBACK"
#: FloatingPointError: a NaN or infinite loss, stopped before it reached the weights (its message says where).
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, pickle.UnpicklingError, FloatingPointError)
_PACKAGE_DIR = Path(__file__).resolve().parent


def configuration_error(error: BaseException) -> BaseException | None:
    """The innermost configuration or data error lit-kd raised in ``error``'s chain (``None`` if there is none).

    LightningCLI and jsonargparse wrap an error raised while a class is built (a teacher checkpoint that does not
    fit, an unknown layer name) in their own, with the whole namespace; the original is the chain's cause. Errors
    count when their type is a bad value, type, missing file or refused pickle and lit-kd's own code raised them.
    """
    found, seen, current = None, set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        if (
            isinstance(current, _USER_ERRORS)
            and frames
            and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE_DIR)
        ):
            found = current
        suppressed = current.__suppress_context__ and current.__cause__ is None
        current = current.__cause__ if current.__cause__ is not None else (None if suppressed else current.__context__)
    return found


@contextlib.contextmanager
def one_line_errors(program: str = "lit-kd") -> Iterator[None]:
    """Inside, a configuration or data error (:func:`configuration_error`) ends the program with one line.

    The line is ``<program>: error: <message>`` on stderr and the exit status is 2; ``LIT_KD_TRACEBACK=1`` shows the
    full traceback instead. Other errors propagate unchanged.
    """
    try:
        yield
    except Exception as error:
        found = configuration_error(error)
        if found is None or os.environ.get(TRACEBACK_ENVIRONMENT_VARIABLE, "") not in ("", "0"):
            raise
        print(
            f"{program}: error: {found}\n(set {TRACEBACK_ENVIRONMENT_VARIABLE}=1 for the full traceback)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
