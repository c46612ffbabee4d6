"""`tidemark sync ...`: offline-first sync utilities."""
