"""The call flow shared by all four transports, as a generator of IO effects.

Modelled on httpx's ``Auth.auth_flow``: :meth:`Engine.flow` yields what IO to
do (:class:`Get`, :class:`Join`, :class:`Scan`, :class:`Send`) and receives the
results; ``llmtap._transport`` holds the two short drivers, sync and async,
that perform them. The flow returns a :class:`Reply` saying how to answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from llmtap._core.control import HEADER, NO_CONTROL, CacheControl, ControlError, read_control
from llmtap._core.entry import CacheEntry, EntryError, decode_entry
from llmtap._core.exchange import Exchange
from llmtap._core.explain import miss_message, nearest
from llmtap._core.key import hash_material, key_material
from llmtap._core.observe import NullTelemetry, Telemetry
from llmtap._core.policy import Decision, decide
from llmtap._core.request import LLMCall, RequestFacts, parse_body
from llmtap._core.usage import UsageHider, needs_usage, with_usage

log = logging.getLogger("llmtap")

_METRIC_OPS = {"scan": "get", "lock": "set"}


class Get(NamedTuple):
    """Read ``key`` from the store; the driver sends back the bytes, ``None``, or the
    exception of a store that failed (reported by the driver, labelled with ``call``)."""

    key: str
    call: LLMCall


class Join(NamedTuple):
    """Single flight on ``key``: the driver sends back ``None`` if this call leads,
    or waits for the leader and sends back ``False``. A leader's ``release``
    callback is registered on the exchange."""

    key: str
    exchange: Exchange


class Scan(NamedTuple):
    """List stored ``(key, entry bytes)``; used only to explain a replay miss."""

    call: LLMCall


class Send(NamedTuple):
    """Forward the request upstream — with ``body`` instead of the caller's when set —
    and send back ``(status, headers)``."""

    body: bytes | None = None


class Run:
    """Steps one flow for a driver: hands out effects, takes results, keeps the reply.

    Drivers loop ``while (effect := run.next()) is not None``, performing each
    effect inside :meth:`performing`: an exception from it (upstream failing, a
    cancellation while waiting) is thrown into the flow, so the call is reported,
    and then reaches the caller unchanged.
    """

    __slots__ = ("_flow", "reply", "result", "ticket", "upstream")

    def __init__(self, flow: Generator[Any, Any, Reply]) -> None:
        self._flow = flow
        self.result: Any = None
        self.upstream: Any = None
        self.reply: Reply | None = None
        #: The driver's note of its flight table before the last store read (see Join).
        self.ticket: int | None = None

    def next(self) -> Any:
        try:
            return self._flow.send(self.result)
        except StopIteration as stop:
            self.reply = stop.value
            return None

    def performing(self) -> Run:
        """``with run.performing():`` around one effect. The run is its own context
        manager: every intercepted call enters it once per effect, and a generator-based
        one would cost a generator each time."""
        return self

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._flow.throw(exc)  # the flow reports the call and raises exc again


@dataclass(slots=True)
class Reply:
    """How to answer: ``tap`` upstream's answer, serve a stored ``entry``, or ``refuse``."""

    kind: str
    exchange: Exchange | None = None
    entry: CacheEntry | None = None
    status: int = 0
    body: bytes = b""


def describe_error(exc: BaseException) -> str:
    """The type and the message: some libraries' ``repr`` is only a category (redis-py 8
    gives ``network:ConnectionError``), which would hide why the store failed."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def error_body(kind: str, message: str) -> bytes:
    """An OpenAI-style error document, which every OpenAI SDK turns into an APIError."""
    return orjson.dumps({"error": {"type": kind, "message": message, "param": None, "code": kind}})


class Engine:
    """Settings of one transport, and the flow every call through it follows."""

    def __init__(
        self,
        *,
        mode: str,
        cache_when: Callable[[dict[str, Any]], bool],
        key_ignore: Iterable[str],
        namespace: str,
        ttl: float | None,
        has_store: bool,
        backend: str = "none",
        ensure_stream_usage: bool = False,
        telemetry: Telemetry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Without a store there is nothing to read or write, but replay still means
        # offline: every call fails fast instead of quietly reaching the network.
        self.has_store = has_store
        self.mode = mode if has_store or mode == "replay" else "off"
        self.backend = backend
        self.ensure_stream_usage = ensure_stream_usage
        self.cache_when = cache_when
        self.key_ignore = frozenset(key_ignore)
        self.namespace = namespace
        self.ttl = ttl
        self.telemetry: Telemetry = telemetry or NullTelemetry()
        #: Nothing to cache, observe or rewrite: calls only get their ``bypass`` label.
        self.inert = (
            self.mode == "off" and type(self.telemetry) is NullTelemetry and not ensure_stream_usage
        )
        self.clock = clock
        self._warned: set[str] = set()

    def describe(self, facts: RequestFacts, operation: str) -> LLMCall | None:
        body = parse_body(facts.body)
        if body is None:
            return None
        return LLMCall(operation, facts, body)

    def flow(self, facts: RequestFacts, call: LLMCall) -> Generator[Any, Any, Reply]:
        try:
            control = read_control(facts.headers.get(HEADER), facts.extensions)
        except ControlError as exc:
            # Still an intercepted call: reported (span, metrics) and labelled bypass.
            exchange = self._exchange(call, NO_CONTROL, decide("off", False, NO_CONTROL), None)
            return self._refuse(exchange, 400, "llmtap_invalid_cache_control", exc)
        cacheable = self._cacheable(call)
        decision = decide(self.mode, cacheable, control)
        key = material = None
        if decision.keyed:
            namespace = control.namespace if control.namespace is not None else self.namespace
            try:
                material = key_material(call, namespace, self.key_ignore)
                key = hash_material(material)
            except (RecursionError, TypeError, ValueError) as exc:
                # A valid JSON object can still be unkeyable: orjson parses 1024 levels of
                # nesting but serialises only 255, and canonicalising recurses in Python.
                # Such a call is sent uncached rather than failing inside llmtap.
                self.warn_once("key", f"llmtap: no cache key for this request ({exc}); not caching")
                material, cacheable = None, False
                decision = decide(self.mode, cacheable, control)
        exchange = self._exchange(call, control, decision, key, material)
        try:
            return (yield from self._answer(exchange, decision, cacheable))
        except BaseException as exc:
            # Any effect may fail or be cancelled (a store read, waiting on a leader,
            # sending): the call is still reported, exactly once.
            exchange.fail(exc)
            raise

    def _answer(
        self, exchange: Exchange, decision: Decision, cacheable: bool
    ) -> Generator[Any, Any, Reply]:
        call, key = exchange.call, exchange.key
        if key is not None and (decision.read or decision.offline):
            entry = self.accept((yield Get(key, call)), exchange) if decision.read else None
            leads = entry is not None or not decision.write or decision.offline
            if not leads and (yield Join(key, exchange)) is False:
                entry = self.accept((yield Get(key, call)), exchange)
            if entry is not None:
                return self.hit(exchange, entry)
        if decision.offline:
            return (yield from self._refuse_offline(exchange, cacheable))
        if key is not None and decision.write and not decision.read:
            previous = self.accept((yield Get(key, call)), exchange)
            exchange.old_fingerprint = previous.system_fingerprint if previous else None
        outgoing = None
        if self.ensure_stream_usage and needs_usage(call.body, call.api_type):
            outgoing = with_usage(call.body)
            exchange.hider = UsageHider()
        status, headers = yield Send(outgoing)
        exchange.begin_answer(status, headers)
        return Reply("tap", exchange=exchange)

    def _cacheable(self, call: LLMCall) -> bool:
        try:
            return bool(self.cache_when(call.body))
        except Exception as exc:
            self.warn_once("cache_when", f"llmtap: cache_when raised {exc!r}; not caching")
            return False

    def accept(self, raw: bytes | Exception | None, exchange: Exchange) -> CacheEntry | None:
        """A stored value as an entry, or ``None`` if absent, expired or unreadable.

        ``raw`` is the exception of a store that failed (the driver reported it): kept
        on the exchange with any decoding error, so a replay miss says the answer is
        stored but unreadable (a merge conflict in a recording) and names why.
        """
        if raw is None:
            return None
        if isinstance(raw, Exception):
            exchange.unreadable = f"the store failed to read it ({describe_error(raw)})"
            return None
        try:
            entry = decode_entry(raw, material=False)
        except EntryError as exc:
            self.warn_once(
                "corrupt",
                f"llmtap: ignoring an unreadable entry in the {self.backend} cache "
                f"(key {exchange.key}): {exc}",
            )
            self.telemetry.cache_error(self.backend, "get", exchange.call)
            exchange.unreadable = f"its stored answer could not be read ({exc})"
            return None
        if entry.expired(self.clock()):
            return None
        return entry

    def hit(self, exchange: Exchange, entry: CacheEntry) -> Reply:
        exchange.serve(entry)
        return Reply("hit", exchange=exchange, entry=entry)

    def _refuse_offline(self, exchange: Exchange, cacheable: bool) -> Generator[Any, Any, Reply]:
        call = exchange.call
        if not self.has_store:
            reason = "the transport has no cache store (cache=None)"
        elif exchange.key is None:
            reason = "no cache key could be computed for it (see the warning logged)"
        elif not cacheable:
            reason = "cache_when excludes it, so it can never be replayed"
        elif not exchange.decision.read:
            reason = f"the request asked for {exchange.control.directive!r}"
        elif exchange.unreadable is not None:
            reason = exchange.unreadable
        else:
            reason = "it was never recorded"
        near = None
        if exchange.material is not None and self.has_store:
            stored = yield Scan(call)
            near = nearest(exchange.material, self._materials(stored))
        message = miss_message(self.mode, exchange.key, call.operation, call.model, reason, near)
        return self._refuse(exchange, 404, "llmtap_cache_miss", LookupError(message))

    def _exchange(
        self,
        call: LLMCall,
        control: CacheControl,
        decision: Decision,
        key: str | None,
        material: dict[str, Any] | None = None,
    ) -> Exchange:
        observation = self.telemetry.begin(call, self.clock())
        return Exchange(call, control, decision, key, material, observation, self.clock, self.ttl)

    @staticmethod
    def _refuse(exchange: Exchange, status: int, kind: str, error: Exception) -> Reply:
        """Answer with an OpenAI-style error document instead of going upstream."""
        exchange.refuse(status, error)
        return Reply("refuse", exchange=exchange, status=status, body=error_body(kind, str(error)))

    def _materials(
        self, stored: Iterable[tuple[str, bytes]]
    ) -> Iterable[tuple[str, dict[str, Any]]]:
        for key, raw in stored:
            try:
                yield key, decode_entry(raw).key_material
            except EntryError:
                continue

    def warn_once(self, topic: str, message: str) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            log.warning(message)

    def store_failed(self, backend: str, op: str, exc: BaseException, call: LLMCall) -> None:
        """A backend failed: count it, warn once per outage, and carry on without it.

        The metric's ``op`` is get or set (TELEMETRY.md): listing the store (to explain
        a replay miss) is a read, taking or releasing a single-flight lock a write."""
        self.telemetry.cache_error(backend, _METRIC_OPS.get(op, op), call)
        self.warn_once(
            f"backend:{op}",
            f"llmtap: cache {op} on {backend} failed ({describe_error(exc)}); "
            "the call goes on without the cache",
        )

    def store_recovered(self, op: str) -> None:
        self._warned.discard(f"backend:{op}")
