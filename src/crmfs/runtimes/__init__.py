"""The two runtimes of one semantics: streaming (tiles online) and batch (SQL)."""
