"""`tidemark mappings ...`: watch the self-healing mapping provider at work."""
