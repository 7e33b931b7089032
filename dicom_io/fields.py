"""Read numeric header fields defensively: a malformed value names its field, never crashes.

pydicom converts DS/IS values lazily and raises (or warns) on text such as "abc";
these helpers turn any such failure, a wrong number of values or a non-finite number
into a `FieldError` whose message names the DICOM keyword and the value found.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from pydicom.dataset import Dataset


class FieldError(ValueError):
    """A header field that cannot be used; the message starts with its keyword."""

    def __init__(self, keyword: str, problem: str) -> None:
        super().__init__(f"{keyword} {problem}")
        self.keyword = keyword


def raw_text(ds: Dataset, keyword: str) -> str:
    """The field's value as text for a message, whatever it holds ("" when absent)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            element = ds.get_item(keyword)
            if element is None:
                return ""
            value = element.value
    except Exception:  # the text is only for a message: fall back to nothing
        return "?"
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    text = str(value).strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _value(ds: Dataset, keyword: str) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ds.get(keyword)
        except Exception as exc:  # pydicom's conversion of a malformed value
            text = raw_text(ds, keyword)
            raise FieldError(keyword, f"is not readable ({text!r}): {exc}") from exc


def present(ds: Dataset, keyword: str) -> bool:
    """True when the field exists with a non-empty value."""
    try:
        value = _value(ds, keyword)
    except FieldError:
        return True  # present, though malformed: the parser will say how
    return value is not None and value != ""


def floats(ds: Dataset, keyword: str, count: int | None = None) -> list[float]:
    """The field as finite floats, exactly `count` of them when given."""
    value = _value(ds, keyword)
    if value is None or value == "":
        raise FieldError(keyword, "is missing")
    many = isinstance(value, Sequence) and not isinstance(value, str | bytes)
    items = list(value) if many else [value]
    if count is not None and len(items) != count:
        raise FieldError(
            keyword, f"has {len(items)} value(s) ({raw_text(ds, keyword)!r}); expected {count}"
        )
    numbers = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise FieldError(keyword, f"is not numeric ({raw_text(ds, keyword)!r})") from None
        if not math.isfinite(number):
            raise FieldError(keyword, f"is not finite ({raw_text(ds, keyword)!r})")
        numbers.append(number)
    return numbers


def optional_float(ds: Dataset, keyword: str) -> float | None:
    """One finite float, or None when the field is absent or empty."""
    value = _value(ds, keyword)
    if value is None or value == "":
        return None
    return floats(ds, keyword, 1)[0]


def optional_int(ds: Dataset, keyword: str) -> int | None:
    """One integer, or None when absent or empty (a non-integer is a FieldError)."""
    number = optional_float(ds, keyword)
    if number is None:
        return None
    if number != int(number):
        raise FieldError(keyword, f"is not an integer ({raw_text(ds, keyword)!r})")
    return int(number)
