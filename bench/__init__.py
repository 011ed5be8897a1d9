"""AtomChat's benchmark: fan-out throughput, latency, logins, memory and a profile.

Run `python -m bench --help`; bench/README.md explains the figures.
"""
