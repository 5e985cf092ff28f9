"""Identity resolution: identifiers, their normalization, and golden ids."""
