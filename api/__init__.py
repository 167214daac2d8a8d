"""The HTTP layer: thin FastAPI routers over services."""
