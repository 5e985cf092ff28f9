"""Passing many values to SQLite in one parameter, as a JSON array read by ``json_each``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def json_array(values: Iterable[Any]) -> str | None:
    """``values`` as a JSON array that ``json_each`` gives back unchanged, or None if it
    would not: only text and integers qualify, and SQLite's JSON functions end a string at
    NUL (the caller then binds the values one by one)."""
    items = list(values)
    if not all(type(value) is str or type(value) is int for value in items):
        return None
    text = json.dumps(items)
    return None if "\\u0000" in text else text
