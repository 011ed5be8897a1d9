"""One revision per schema change."""
