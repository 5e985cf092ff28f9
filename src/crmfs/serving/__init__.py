"""Serving: online reads with freshness."""
