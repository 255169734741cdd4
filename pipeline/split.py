"""The temporal split: the holdout year is the test set, the other years in range are train."""

from __future__ import annotations

import re

from unigeo.core.sample import TEST, TRAIN

_RANGE = re.compile(r"^\s*(\d{4})\s*-\s*(\d{4})\s*$")


def parse_years(text: str) -> tuple[int, int]:
    """``"2017-2024"`` -> (2017, 2024), inclusive."""
    m = _RANGE.match(text)
    if not m or int(m[1]) > int(m[2]):
        raise ValueError(f"years must look like 2017-2024 (first <= last), got {text!r}")
    return int(m[1]), int(m[2])


def split_of(year: int, holdout_year: int, years: tuple[int, int]) -> str | None:
    """``test`` for the holdout year, ``train`` for other years in range, None outside the range."""
    if year == holdout_year:
        return TEST
    if years[0] <= year <= years[1]:
        return TRAIN
    return None
