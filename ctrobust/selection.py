"""Which test slices a batch run attacks: ``attack.slices`` within ``attack.series``.

A slice spec is ``all``, ``first:N`` (the first N slices of each series), ``every:K``
(every K-th slice of each series, starting with the first) or a list naming slices by
their source InstanceNumber (an int) or their label (a string, as in metrics.json).
Series are named by SeriesInstanceUID, SeriesDescription or patient.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated

from pydantic import AfterValidator

_COUNTED = re.compile(r"^(first|every):([1-9][0-9]*)$")


def check_slice_spec(spec: str | list[int | str]) -> str | list[int | str]:
    """The spec unchanged when it is well formed; a ValueError saying what is allowed otherwise."""
    if isinstance(spec, list):
        if not spec:
            raise ValueError("an empty list attacks nothing; use all, first:N or every:K")
        return spec
    if spec != "all" and not _COUNTED.match(spec):
        raise ValueError(
            f"'{spec}' is not a slice choice: use all, first:N, every:K (N, K >= 1) or a list "
            "of InstanceNumbers or slice labels"
        )
    return spec


SliceSpec = Annotated[str | list[int | str], AfterValidator(check_slice_spec)]


def slice_label(meta: Mapping[str, object]) -> str:
    """The one name of a slice everywhere: ``patient:series-suffix:IN<InstanceNumber> z=<z>mm``.

    The patient and series are pseudonyms when the run is de-identified. Slices ingested
    before InstanceNumber and z were recorded fall back to their index in the series.
    """
    head = f"{meta['patient']}:{str(meta['series'])[-8:]}"
    if meta.get("instance") is None:
        return f"{head}:{meta['slice']}"
    z = meta.get("z")
    return f"{head}:IN{meta['instance']}" + ("" if z is None else f" z={float(z):.1f}mm")


def _in_series(rows: Sequence[int], spec: str | list[int | str], metas: Sequence[Mapping]) -> list:
    if isinstance(spec, list):
        wanted = {str(v) for v in spec}
        return [r for r in rows if {str(metas[r].get("instance")), slice_label(metas[r])} & wanted]
    if spec == "all":
        return list(rows)
    kind, count = spec.split(":")
    return list(rows[: int(count)]) if kind == "first" else list(rows[:: int(count)])


def select_rows(
    metas: Sequence[Mapping[str, object]],
    rows: Iterable[int],
    spec: str | list[int | str],
    series: Sequence[str] | None = None,
    names_of: Callable[[str], set[str]] = lambda name: {name},
) -> list[int]:
    """The rows (indices into ``metas``) among ``rows`` that the spec chooses, series by series.

    ``names_of`` maps a configured series name to the names it may appear under in
    ``metas`` (e.g. its pseudonyms in a de-identified run). A configured series that
    matches no test slice is an error, so a typo does not silently attack nothing.
    """
    by_series: dict[str, list[int]] = {}
    for r in rows:
        by_series.setdefault(str(metas[r]["series"]), []).append(r)
    if series is not None:
        kept: dict[str, list[int]] = {}
        for name in series:
            aliases = names_of(name)
            found = {
                key: members
                for key, members in by_series.items()
                if aliases & _series_names(metas[members[0]])
            }
            if not found:
                raise ValueError(f"attack.series: '{name}' names no test series")
            kept.update(found)
        by_series = kept
    chosen = [r for members in by_series.values() for r in _in_series(members, spec, metas)]
    if not chosen:
        raise ValueError(f"attack.slices: {spec!r} chooses no test slice")
    return sorted(chosen)


def _series_names(meta: Mapping[str, object]) -> set[str]:
    """Every name a slice's series answers to: UID, description and patient."""
    names = {str(meta["series"]), str(meta["patient"])}
    if meta.get("description"):
        names.add(str(meta["description"]))
    return names
