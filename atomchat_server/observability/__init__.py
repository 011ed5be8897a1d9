"""What an operator sees: metrics (metrics.py), log lines (logs.py) and the
context of the call a line is about (calls.py)."""
