"""The sans-IO core: pure functions and objects over bytes and dicts.

Nothing here imports httpx, httpx2, diskcache, redis or opentelemetry; the
transports in ``llmtap.httpx`` / ``llmtap.httpx2`` drive it and do the IO.
"""
