"""Storage ports and their embedded adapters."""
