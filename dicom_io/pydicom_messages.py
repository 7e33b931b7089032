"""Keep pydicom's warnings off the user's terminal and attach them to the file they concern.

pydicom reports odd values both through `warnings` and through its "pydicom" logger,
which propagates to whatever handler the application installed (the run log's
stderr handler, for one). While a file is read both are collected instead.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


class _Captured(logging.Handler):
    """Collects pydicom's log records so that they do not reach the user's stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def captured_pydicom_messages() -> Iterator[list[str]]:
    """pydicom warnings (both `warnings` and its logger), kept for the file's report."""
    logger = logging.getLogger("pydicom")
    handler = _Captured()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    messages: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        for text in [str(w.message) for w in caught] + handler.messages:
            short = text.split(". Please see")[0].strip()
            if short not in messages:
                messages.append(short)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
