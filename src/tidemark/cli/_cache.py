"""`tidemark cache ...`: inspect and manage the schema caches."""
