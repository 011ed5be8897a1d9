"""The gRPC surface: one thin servicer per service; domain errors to statuses."""
