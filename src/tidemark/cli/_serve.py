"""`tidemark serve`: the change-tracked resource server."""
