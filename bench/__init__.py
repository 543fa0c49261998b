"""Benchmarks of authpolicy against the emulator: `python -m bench all` (see docs/benchmarks.md).

Modules: config (sizes, latency model, budget), tenants (emulator set-up), child (the measured
client, one process per job), runner (starts children, collects their figures), cases (the
cases), suite (one emulator per tenant size), report and readings (docs/benchmarks.md).
"""
