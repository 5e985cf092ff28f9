"""The streaming runtime: events fold into per-entity tiles in the online store."""
