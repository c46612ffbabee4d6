from tests.replicate.support import replica_url, source_server

__all__ = ["replica_url", "source_server"]
