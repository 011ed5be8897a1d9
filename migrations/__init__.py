"""Alembic migrations of the AtomChat schema (installed as atomchat_server.migrations)."""
