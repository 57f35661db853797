"""The public surface: what API.md names is importable, and ``__all__`` says exactly that."""

from __future__ import annotations

import llmtap
import llmtap.httpx
import llmtap.httpx2


def test_all_is_sorted_and_complete() -> None:
    public = {n for n in dir(llmtap) if not n.startswith("_") and n.isidentifier()}
    public -= {"cache", "httpx", "httpx2", "testing", "telemetry", "cli"}
    assert len(set(llmtap.__all__)) == len(llmtap.__all__)
    for name in llmtap.__all__:
        assert hasattr(llmtap, name), name
    assert public <= set(llmtap.__all__) | {"pytest_plugin"}


def test_four_transports_subclass_their_library() -> None:
    import httpx
    import httpx2

    assert issubclass(llmtap.httpx.Transport, httpx.BaseTransport)
    assert issubclass(llmtap.httpx.AsyncTransport, httpx.AsyncBaseTransport)
    assert issubclass(llmtap.httpx2.Transport, httpx2.BaseTransport)
    assert issubclass(llmtap.httpx2.AsyncTransport, httpx2.AsyncBaseTransport)


def test_unknown_settings_fail_at_construction() -> None:
    import pytest

    for kwargs in ({"mode": "sometimes"}, {"cache_when": "never"}, {"ttl": -1}, {"ttl": True}):
        with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
            llmtap.httpx2.Transport(cache=None, metrics=None, **kwargs)
    with pytest.raises(TypeError):
        llmtap.httpx2.Transport(cache=None, metrics=None, namespace=3)  # type: ignore[arg-type]
