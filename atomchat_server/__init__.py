"""AtomChat: real-time channel chat over gRPC on PostgreSQL."""
