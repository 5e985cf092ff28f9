"""The batch runtime: view plans compiled to SQL and run by DuckDB."""
