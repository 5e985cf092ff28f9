"""Ingestion: read, validate, resolve identity, log, and fold into the online store."""
