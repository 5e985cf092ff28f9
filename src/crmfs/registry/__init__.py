"""The registry: applied definitions, their fingerprints and versions."""
