"""Live delivery: per-channel subscribers in this process and the bus between processes."""
