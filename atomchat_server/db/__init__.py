"""PostgreSQL: the schema, the engine and sessions, and the embedded server."""
