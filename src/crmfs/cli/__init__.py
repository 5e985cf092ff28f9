"""The ``crmfs`` command line."""

from crmfs.cli.app import main

__all__ = ["main"]
