"""Pause Python's cyclic garbage collector while building many objects at once.

Folding a batch or converting a backfill creates hundreds of thousands of lists and dicts
that stay alive until the step ends. Each of them counts towards the collector's
thresholds, so the collector runs again and again over objects that cannot be garbage
(the states hold no reference cycles); pausing it for the step saves a third of the time.
Reference counting still frees everything as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block (unless already off), then restore it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
