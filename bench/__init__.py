"""llmtap benchmarks (issue 6): ``python -m bench`` (full) or ``python -m bench --quick``.

Every number is a ratio against a baseline measured in the same run: variants
are interleaved round by round (the order rotates each round), each round
times a block of calls with ``time.perf_counter_ns``, and the reported figure
is the median over rounds of the per-round ratio. Absolute microseconds are
printed too, for context only: they depend on the machine.

Modules: ``_harness`` (timing, stats, RSS), ``_fixtures`` (canned upstream,
telemetry, clients), ``_server`` (a FakeUpstream in a child process),
``_scenarios`` / ``_cache`` / ``_scale`` (the scenarios), ``_competitors``
(OpenTelemetry instrumentations, each in its own process), ``soak`` (issue 7).
"""
