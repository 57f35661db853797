"""The four transports' shared body: settings, the two flow drivers, and answers.

``llmtap.httpx`` and ``llmtap.httpx2`` subclass :class:`SyncDriver` /
:class:`AsyncDriver` together with their library's base transport and name the
library in ``_lib``; httpx and httpx2 share the transport API, so nothing here
is written once per library. The two drivers differ only in ``await``.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable
from types import ModuleType
from typing import Any, ClassVar, NamedTuple

from llmtap._core.control import HEADER, HEADER_PREFIX
from llmtap._core.engine import Engine, Get, Join, Reply, Run, Send
from llmtap._core.entry import CacheEntry, encode_entry
from llmtap._core.exchange import Exchange
from llmtap._core.key import DEFAULT_KEY_IGNORE
from llmtap._core.policy import CacheWhen, resolve_cache_when, resolve_mode
from llmtap._core.request import LLMCall, RequestFacts, classify
from llmtap._flight import FlightTable
from llmtap._streams import stream_types
from llmtap.cache.base import CacheBackend, in_thread
from llmtap.cache.disk import DiskCache
from llmtap.telemetry import build_telemetry

_DEFAULT: Any = object()
_DEFAULT_PORTS = {"http": 80, "https": 443}
_RETRY_HEADER = "x-stainless-retry-count"
# What no longer holds of a body llmtap hands over decoded or rewritten.
_ENCODED_BODY_HEADERS = ("content-encoding", "content-length")


_RAW_PREFIX = HEADER_PREFIX.encode()
_RAW_RETRY = _RETRY_HEADER.encode()


def _read_headers(headers: Any) -> tuple[str | None, str | None]:
    """Remove every ``x-llmtap-*`` header; the cache control value and the SDK's retry
    count, if any. One pass over the raw byte pairs: ``Headers`` lookups decode and
    normalise every name on each call, and almost no request carries our headers."""
    ours = False
    retries = None
    for name, value in headers.raw:
        lower = name.lower()
        if lower.startswith(_RAW_PREFIX):
            ours = True
        elif lower == _RAW_RETRY:
            retries = value.decode("latin-1")
    if not ours:
        return None, retries
    control = headers.get(HEADER)
    for name in [name for name in headers if name.startswith(HEADER_PREFIX)]:
        del headers[name]
    return control, retries


class _Seen(NamedTuple):
    """What the first look at an intercepted request found, besides its body."""

    url: Any
    path: str
    control: str | None
    retries: str | None
    extension: Any


def _check_settings(namespace: object, ttl: object) -> None:
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, got {namespace!r}")
    if ttl is not None and (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")


class TransportCore:
    """Construction and the library-agnostic steps around a flow."""

    _lib: ClassVar[ModuleType]

    def __init_subclass__(cls, lib: ModuleType | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if lib is not None:
            cls._lib = lib

    def __init__(
        self,
        *,
        transport: Any = None,
        cache: CacheBackend | None = _DEFAULT,
        mode: str | None = None,
        cache_when: CacheWhen = "seeded",
        key_ignore: Iterable[str] = DEFAULT_KEY_IGNORE,
        namespace: str = "",
        ttl: float | None = None,
        tracer_provider: Any = None,
        metrics: Any = _DEFAULT,
        meter_provider: Any = None,
        capture_content: bool | str | None = None,
        provider: str | None = None,
        ensure_stream_usage: bool = False,
    ) -> None:
        _check_settings(namespace, ttl)
        if isinstance(key_ignore, str):
            raise TypeError("key_ignore must be a collection of field names, not a str")
        self._inner = transport if transport is not None else self._default_inner()
        self.cache: CacheBackend | None = DiskCache() if cache is _DEFAULT else cache
        self._backend_name = getattr(self.cache, "name", type(self.cache).__name__)
        self.mode = resolve_mode(mode)
        self._engine = Engine(
            mode=self.mode,
            cache_when=resolve_cache_when(cache_when),
            key_ignore=key_ignore,
            namespace=namespace,
            ttl=ttl,
            has_store=self.cache is not None,
            backend=self._backend_name,
            ensure_stream_usage=ensure_stream_usage,
            telemetry=build_telemetry(
                tracer_provider=tracer_provider,
                metrics=... if metrics is _DEFAULT else metrics,
                meter_provider=meter_provider,
                capture_content=capture_content,
                provider=provider,
            ),
        )
        self._flights = FlightTable(
            backend=self.cache, on_error=self._failed, on_recovered=self._engine.store_recovered
        )
        self._streams = stream_types(self._lib)

    def _default_inner(self) -> Any:
        raise NotImplementedError  # pragma: no cover (SyncDriver / AsyncDriver define it)

    def _operation(self, request: Any) -> tuple[str | None, _Seen]:
        """Strip llmtap's headers; the GenAI operation if this is an LLM call, and what
        :meth:`_facts` needs of the request besides its body."""
        if not isinstance(request, self._lib.Request):
            self._wrong_library(request)
        url = request.url
        path = url.path
        control, retries = _read_headers(request.headers)
        extension = request.extensions.get("llmtap")
        return classify(request.method, path), _Seen(url, path, control, retries, extension)

    def _wrong_library(self, request: Any) -> None:
        """An httpx client given the httpx2 transport (or the reverse) fails deep in the
        inner transport on a bare ``AssertionError``, which SDKs retry and report as a
        connection error: say which transport to use instead."""
        mine = self._lib.__name__
        theirs = type(request).__module__.split(".")[0]
        message = (
            f"llmtap.{mine} transports serve {mine} clients, and this request is from "
            f"{theirs}: use llmtap.{theirs}.Transport / AsyncTransport (openai 3.x, anthropic "
            "2.x and pydantic-ai use httpx2; openai < 3 and litellm use httpx)"
        )
        self._engine.warn_once("library", f"llmtap: {message}")
        raise TypeError(message)

    def _idle(self, seen: _Seen) -> bool:
        """Nothing to do but label: an inert transport and no per-request directive
        (a malformed one is still answered with a 400)."""
        return seen.control is None and seen.extension is None and self._engine.inert

    def _facts(self, request: Any, seen: _Seen) -> RequestFacts:
        url, path, control, retries, extension = seen
        headers = {}
        if control is not None:
            headers[HEADER] = control
        if retries is not None:
            headers[_RETRY_HEADER] = retries
        scheme = url.scheme
        return RequestFacts(
            method=request.method,
            scheme=scheme,
            host=url.host,
            port=url.port or _DEFAULT_PORTS.get(scheme, 0),
            path=path,
            query=list(url.params.multi_items()) if url.query else [],
            headers=headers,
            body=request.content,
            extensions=extension,
        )

    def _begin(
        self, request: Any, operation: str, seen: _Seen
    ) -> Generator[Any, Any, Reply] | None:
        facts = self._facts(request, seen)
        call = self._engine.describe(facts, operation)
        return None if call is None else self._engine.flow(facts, call)

    def _answer(self, reply: Reply | None, upstream: Any, is_async: bool) -> Any:
        assert reply is not None, "a flow always ends with a reply"
        lib, exchange = self._lib, reply.exchange
        if reply.kind == "tap" and exchange is not None:
            tee = self._streams.async_tee if is_async else self._streams.tee
            store = self._astore if is_async else self._store
            upstream.stream = tee(upstream.stream, exchange, store)
            if exchange.decodes_for_caller:
                for name in _ENCODED_BODY_HEADERS:
                    upstream.headers.pop(name, None)
            _label(upstream, exchange.cache, exchange.key)
            return upstream
        if reply.kind == "hit" and exchange is not None and reply.entry is not None:
            entry = reply.entry
            headers = entry.headers + _labels(exchange.cache, exchange.key)
            if not entry.is_stream:
                headers.append(("content-length", str(len(entry.body))))
            watch = exchange if exchange.awaits_reading else None
            replay = self._streams.replay(entry.iter_chunks(), watch)
            response = lib.Response(entry.status, headers=headers, stream=replay)
            _label_extensions(response, exchange.cache, exchange.key)
            return response
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(reply.body))),
            ("x-should-retry", "false"),
        ]
        if exchange is not None:
            headers += _labels(exchange.cache, exchange.key)
        response = lib.Response(
            reply.status, headers=headers, stream=self._streams.replay([reply.body])
        )
        if exchange is not None:
            _label_extensions(response, exchange.cache, exchange.key)
        return response

    def _already_read(self, reply: Reply | None, upstream: Any) -> tuple[Exchange, Any] | None:
        """The exchange and a replay of upstream's body when the answer arrived already
        read (MockTransport and other in-memory transports): there is nothing to tee
        while the caller reads, so the driver runs the body through the tee at once."""
        if reply is None or reply.kind != "tap" or reply.exchange is None:
            return None
        try:
            content = upstream.content
        except self._lib.ResponseNotRead:
            return None
        reply.exchange.skip_decoding()  # the library decoded it while reading
        return reply.exchange, self._streams.replay([content])

    def _absorbed(self, upstream: Any, exchange: Exchange, visible: bytes) -> Any:
        if visible != upstream.content:
            # ensure_stream_usage hid the usage chunk: hand over the visible bytes.
            skip = _ENCODED_BODY_HEADERS
            upstream = self._lib.Response(
                upstream.status_code,
                headers=[(k, v) for k, v in upstream.headers.multi_items() if k not in skip],
                content=visible,
                extensions=upstream.extensions,
            )
        _label(upstream, exchange.cache, exchange.key)
        return upstream

    @staticmethod
    def _bypassed(response: Any) -> Any:
        """An intercepted call through an inert transport (no store, no telemetry): only
        labelled, its bodies untouched."""
        _label(response, "bypass", None)
        return response

    def _outgoing(self, request: Any, send: Send) -> Any:
        """The request to send: the caller's, or a copy with the body the flow chose."""
        if send.body is None:
            return request
        headers = [(k, v) for k, v in request.headers.multi_items() if k != "content-length"]
        return self._lib.Request(
            request.method,
            request.url,
            headers=headers,
            content=send.body,
            extensions=request.extensions,
        )

    # -- the store, failing open ------------------------------------------------

    def _failed(self, op: str, exc: BaseException, call: LLMCall) -> None:
        self._engine.store_failed(self._backend_name, op, exc, call)

    def _get(self, key: str, call: LLMCall) -> bytes | Exception | None:
        """The stored value; a failing store's exception, reported, for the engine."""
        try:
            value = self.cache.get(key) if self.cache is not None else None
        except Exception as exc:
            self._failed("get", exc, call)
            return exc
        self._engine.store_recovered("get")
        return value

    async def _aget(self, key: str, call: LLMCall) -> bytes | Exception | None:
        try:
            value = await self.cache.aget(key) if self.cache is not None else None
        except Exception as exc:
            self._failed("get", exc, call)
            return exc
        self._engine.store_recovered("get")
        return value

    def _store(self, key: str, entry: CacheEntry, call: LLMCall) -> None:
        try:
            if self.cache is not None:
                self.cache.set(key, encode_entry(entry), _ttl(entry))
        except Exception as exc:
            self._failed("set", exc, call)
            return
        self._engine.store_recovered("set")

    async def _astore(self, key: str, entry: CacheEntry, call: LLMCall) -> None:
        try:
            if self.cache is not None:
                await self.cache.aset(key, encode_entry(entry), _ttl(entry))
        except Exception as exc:
            self._failed("set", exc, call)
            return
        self._engine.store_recovered("set")

    def _scan(self, call: LLMCall) -> list[tuple[str, bytes]]:
        try:
            found = list(self.cache.iter_entries()) if self.cache is not None else []
        except Exception as exc:
            self._failed("scan", exc, call)
            return []
        self._engine.store_recovered("scan")
        return found


def _labels(cache: str, key: str | None) -> list[tuple[str, str]]:
    """The response headers saying what the cache did (API.md)."""
    if key is None:
        return [("x-llmtap-cache", cache)]
    return [("x-llmtap-cache", cache), ("x-llmtap-cache-key", key)]


def _label_extensions(response: Any, cache: str, key: str | None) -> None:
    extensions = response.extensions
    extensions["llmtap_cache"] = cache
    if key is not None:
        extensions["llmtap_cache_key"] = key


def _label(response: Any, cache: str, key: str | None) -> None:
    """Label a response built elsewhere (upstream's); ours get the headers at construction."""
    headers = response.headers
    for name, value in _labels(cache, key):
        headers[name] = value
    _label_extensions(response, cache, key)


def _ttl(entry: CacheEntry) -> float | None:
    return None if entry.expires_at is None else max(1.0, entry.expires_at - entry.created_at)


def _head(response: Any) -> tuple[int, list[tuple[str, str]]]:
    # From the raw byte pairs: ``multi_items()`` first detects the block's encoding by
    # decoding every header, then decodes each again.
    return response.status_code, [(_text(k.lower()), _text(v)) for k, v in response.headers.raw]


def _text(raw: bytes) -> str:
    """A header name or value as ``Headers`` would decode it: ASCII or UTF-8, else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class SyncDriver(TransportCore):
    """``handle_request`` for ``httpx.BaseTransport`` / ``httpx2.BaseTransport``."""

    def _default_inner(self) -> Any:
        return self._lib.HTTPTransport()

    def handle_request(self, request: Any) -> Any:
        operation, seen = self._operation(request)
        if operation is None:
            return self._inner.handle_request(request)
        if self._idle(seen):
            return self._bypassed(self._inner.handle_request(request))
        request.read()
        flow = self._begin(request, operation, seen)
        if flow is None:
            return self._inner.handle_request(request)
        run = Run(flow)
        while (effect := run.next()) is not None:
            with run.performing():
                run.result = self._perform(effect, request, run)
        read = self._already_read(run.reply, run.upstream)
        if read is None:
            return self._answer(run.reply, run.upstream, is_async=False)
        exchange, body = read
        visible = b"".join(self._streams.tee(body, exchange, self._store, watch=False))
        return self._absorbed(run.upstream, exchange, visible)

    def _perform(self, effect: Any, request: Any, run: Run) -> Any:
        if type(effect) is Send:
            run.upstream = self._inner.handle_request(self._outgoing(request, effect))
            return _head(run.upstream)
        if type(effect) is Get:
            run.ticket = self._flights.released
            return self._get(effect.key, effect.call)
        if type(effect) is Join:
            return self._flights.join(effect.key, effect.exchange, run.ticket)
        return self._scan(effect.call)

    def close(self) -> None:
        self._inner.close()


class AsyncDriver(TransportCore):
    """``handle_async_request`` for ``httpx.AsyncBaseTransport`` / ``httpx2``'s."""

    def _default_inner(self) -> Any:
        return self._lib.AsyncHTTPTransport()

    async def handle_async_request(self, request: Any) -> Any:
        operation, seen = self._operation(request)
        if operation is None:
            return await self._inner.handle_async_request(request)
        if self._idle(seen):
            return self._bypassed(await self._inner.handle_async_request(request))
        await request.aread()
        flow = self._begin(request, operation, seen)
        if flow is None:
            return await self._inner.handle_async_request(request)
        run = Run(flow)
        while (effect := run.next()) is not None:
            with run.performing():
                run.result = await self._aperform(effect, request, run)
        read = self._already_read(run.reply, run.upstream)
        if read is None:
            return self._answer(run.reply, run.upstream, is_async=True)
        exchange, body = read
        tee = self._streams.async_tee(body, exchange, self._astore, watch=False)
        visible = b"".join([chunk async for chunk in tee])
        return self._absorbed(run.upstream, exchange, visible)

    async def _aperform(self, effect: Any, request: Any, run: Run) -> Any:
        if type(effect) is Send:
            outgoing = self._outgoing(request, effect)
            run.upstream = await self._inner.handle_async_request(outgoing)
            return _head(run.upstream)
        if type(effect) is Get:
            run.ticket = self._flights.released
            return await self._aget(effect.key, effect.call)
        if type(effect) is Join:
            return await self._flights.ajoin(effect.key, effect.exchange, run.ticket)
        return await in_thread(self._scan, effect.call)

    async def aclose(self) -> None:
        await self._inner.aclose()
