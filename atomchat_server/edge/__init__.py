"""Envoy in front of the gRPC port: rendering its configuration and running it."""
