"""A process's own peak memory, for the benchmarks' 1M-row children (crmfs's and Feast's).

``os.wait4``'s ``ru_maxrss`` for a child is not it: a child forked from the benchmark's parent
starts as a copy of the parent, and the kernel keeps that copy's resident size in the child's
``ru_maxrss`` across ``exec`` (a parent holding 800 MB gives a child running ``pass`` an
``ru_maxrss`` of 800 MB). ``VmHWM`` in ``/proc/self/status`` belongs to the address space the
child runs in, made new by ``exec``: the peak of the child's own work.
"""

from __future__ import annotations

from pathlib import Path


def own_peak_mb() -> float | None:
    """This process's peak resident memory (VmHWM) in MiB, or None where /proc has none."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # reported in kB
    return None
