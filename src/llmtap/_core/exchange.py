"""One intercepted call from request to stored answer: the pure state machine.

The drivers (``llmtap._transport``) feed it upstream's chunks and do what it
asks. It decides what is complete, what is stored and what is reported, and
guarantees the report happens exactly once whichever way the call ends.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Any

from llmtap._core.answer import AnswerAccumulator, response_summary
from llmtap._core.control import CacheControl
from llmtap._core.decode import CorruptBody, Decoder, UnsupportedEncoding
from llmtap._core.entry import CacheEntry, allowed_headers
from llmtap._core.observe import CallRecord, Observation
from llmtap._core.policy import Decision
from llmtap._core.request import LLMCall
from llmtap._core.usage import UsageHider

log = logging.getLogger("llmtap")

_EVENT_STREAM = "text/event-stream"


def _decoding(step: Callable[[], bytes]) -> bytes:
    """One step of decoding a body the caller receives decoded: a failure is theirs."""
    try:
        return step()
    except Exception as exc:
        raise CorruptBody(f"could not decode upstream's compressed stream: {exc}") from exc


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    # httpx and httpx2 raise from private submodules; report the public name.
    root = module.split(".")[0]
    if root in ("httpx", "httpx2") or module.startswith("asyncio"):
        module = root
    return f"{module}.{cls.__qualname__}" if module != "builtins" else cls.__qualname__


class Exchange:
    """A cacheable or observed call in flight."""

    __slots__ = (
        "_accumulator",
        "_chunks",
        "_decoded",
        "_decoder",
        "_done",
        "_on_settled",
        "_passive",
        "_quiet",
        "_served",
        "_storable",
        "cache",
        "call",
        "clock",
        "control",
        "decision",
        "decodes_for_caller",
        "hider",
        "key",
        "material",
        "observation",
        "old_fingerprint",
        "started_at",
        "status",
        "ttl",
        "unreadable",
        "upstream_headers",
    )

    def __init__(
        self,
        call: LLMCall,
        control: CacheControl,
        decision: Decision,
        key: str | None,
        material: dict[str, Any] | None,
        observation: Observation,
        clock: Callable[[], float],
        ttl: float | None,
    ) -> None:
        self.call = call
        self.control = control
        self.decision = decision
        self.key = key
        self.material = material
        self.observation = observation
        #: Nobody is told how the call went (no spans, no metrics): skip the record.
        self._passive: bool = getattr(observation, "passive", False)
        self.clock = clock
        self.ttl = ttl
        self.started_at = clock()
        # API.md: "bypass" when cache_when excludes the call, even in replay, where
        # its key is still computed to name the nearest recording.
        self.cache = "miss" if decision.cacheable else "bypass"
        self.status: int | None = None
        self.upstream_headers: list[tuple[str, str]] = []
        self.old_fingerprint: str | None = None
        #: Why the store could not give an answer it may hold (a replay miss says so).
        self.unreadable: str | None = None
        self.hider: UsageHider | None = None
        #: The caller is handed decoded bytes: the driver drops upstream's
        #: ``content-encoding`` (a hidden usage chunk inside a compressed stream).
        self.decodes_for_caller = False
        self._accumulator: AnswerAccumulator | None = None
        self._decoder: Decoder | None = None
        self._decoded: list[bytes] = []
        self._chunks: list[int] = []
        self._storable = False
        self._served: CacheEntry | None = None
        self._quiet = False
        self._done = False
        self._on_settled: list[Callable[[], None]] = []

    # -- the upstream answer -------------------------------------------------

    def begin_answer(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Upstream answered with ``status``; its body follows through :meth:`feed`."""
        self.status = status
        self.upstream_headers = headers
        content_type = ""
        encoding = None
        for name, value in headers:
            lower = name.lower()
            if lower == "content-type":
                content_type = value
            elif lower == "content-encoding":
                encoding = value
        stream = _EVENT_STREAM in content_type
        observation = self.observation
        self._accumulator = AnswerAccumulator(
            stream,
            keep_text=getattr(observation, "wants_text", True),
            chunk_times=getattr(observation, "wants_chunk_times", False),
        )
        self._storable = self.decision.write and 200 <= status < 300
        try:
            self._decoder = Decoder(encoding) if encoding else None
        except UnsupportedEncoding as exc:
            log.debug("llmtap: not storing an answer with content-encoding %s", exc)
            self._storable = False
        if self.hider is not None and (
            (encoding and self._decoder is None) or not stream or not 200 <= status < 300
        ):
            self.hider = None  # only a 2xx event stream llmtap can decode is filtered
        # A compressed stream is decoded for the caller: hiding works on events, and
        # re-compressing would only cost time for a body the client decodes anyway.
        self.decodes_for_caller = self.hider is not None and self._decoder is not None
        # Nothing to store and nobody to tell: pass the body through untouched.
        self._quiet = self._passive and not self._storable and self.hider is None

    @property
    def is_stream(self) -> bool:
        return self._accumulator is not None and self._accumulator._stream

    def feed(self, chunk: bytes) -> bytes:
        """One chunk of upstream's body; returns what the caller is handed (the chunk
        itself, unless ``ensure_stream_usage`` hides the usage chunk)."""
        accumulator = self._accumulator
        if accumulator is None or self._done or self._quiet or not chunk:
            return chunk  # an empty chunk, too: a finished zstd decoder refuses even b""
        if self.hider is not None:
            decoder = self._decoder
            if decoder is not None:
                # The caller already holds decoded bytes: a corrupt body cannot fall
                # back to passing through, so the decoding error reaches the caller.
                chunk = _decoding(lambda: decoder.decode(chunk))
            accumulator.feed(chunk, self.clock())
            return self._show(self.hider.visible(chunk))
        raw = chunk
        if self._decoder is not None:
            try:
                chunk = self._decoder.decode(chunk)
            except (zlib.error, OSError, ValueError, Exception) as exc:
                log.debug("llmtap: could not decode upstream body: %r", exc)
                self._decoder = None
                self._storable = False
                return raw
        if self._storable:
            self._decoded.append(chunk)
            self._chunks.append(len(chunk))
        accumulator.feed(chunk, self.clock())
        return raw

    def _show(self, visible: bytes) -> bytes:
        if self._storable and visible:
            self._decoded.append(visible)
            self._chunks.append(len(visible))
        return visible

    def skip_decoding(self) -> None:
        """The body will arrive already decoded (the HTTP library read it whole)."""
        self._decoder = None
        self.decodes_for_caller = False

    def flush_visible(self) -> bytes:
        """What a hiding stream still holds back at the end of the body."""
        if self.hider is None or self._done:
            return b""
        visible = b""
        if self._decoder is not None:
            decoder, self._decoder = self._decoder, None
            rest = _decoding(decoder.flush)
            if rest and self._accumulator is not None:
                self._accumulator.feed(rest, self.clock())
                visible = self._show(self.hider.visible(rest))
        return visible + self._show(self.hider.flush())

    # -- endings ---------------------------------------------------------------

    def finish(self, ended: bool, error: BaseException | None = None) -> CacheEntry | None:
        """End the call once: report it, and return the entry to store if it is whole.

        ``ended`` means the body was read to its end without error; a caller
        closing early passes ``False``.
        """
        if self._done:
            return None
        self._done = True
        now = self.clock()
        accumulator = self._accumulator
        if accumulator is not None and ended and error is None:
            if self._decoder is not None:
                try:
                    tail = self._decoder.flush()
                except Exception:
                    tail, self._storable = b"", False
                if tail:
                    self._decoded.append(tail)
                    self._chunks.append(len(tail))
                    accumulator.feed(tail, now)
            if self._storable or not self._passive:
                accumulator.end_of_body(now)
        complete = accumulator is not None and accumulator.complete(ended and error is None)
        if not self._passive:
            self._report(self._record(now, complete, error, ended))
        if not (complete and self._storable and self.key is not None):
            return None
        return self._entry(now)

    def fail(self, error: BaseException) -> None:
        """The call failed before any answer (connect error, timeout, cancellation)."""
        if self._done:
            return
        self._done = True
        self._report(self._record(self.clock(), False, error, False))
        self.settle()

    def refuse(self, status: int, error: Exception) -> None:
        """llmtap answers ``status`` itself (a replay miss, a malformed directive): an
        error whose type is that status (TELEMETRY.md), with ``error`` as the message."""
        if self._done:
            return
        self._done = True
        self.status = status
        record = self._record(self.clock(), False, None, False)
        record.outcome, record.error_type, record.error = "error", str(status), error
        self._report(record)
        self.settle()

    def serve(self, entry: CacheEntry) -> None:
        """The call is answered from the store. It is reported by :meth:`served`, when
        the caller has read the replay (or closed it): a hit's span and duration cover
        the whole answer, as a miss's do."""
        if self._done:
            return
        self.cache = "hit"
        self.status = entry.status
        if self._passive:
            self._done = True
            return
        self._served = entry

    @property
    def awaits_reading(self) -> bool:
        """A hit whose report waits for the end of its replay (see :meth:`served`)."""
        return self._served is not None and not self._done

    def served(self, ended: bool) -> None:
        """The caller read the replayed answer to its end (``ended``) or closed it early
        (a cancelled call, as for a miss)."""
        entry = self._served
        if self._done or entry is None:
            return
        self._done = True
        record = self._record(self.clock(), ended, None, ended)
        record.entry_age = max(0.0, record.ended_at - entry.created_at)
        record.saved_usage = entry.usage
        record.entry = entry
        self._report(record)

    def on_settled(self, callback: Callable[[], None]) -> None:
        self._on_settled.append(callback)

    def settle(self) -> None:
        """The answer is stored (or not): wake single-flight waiters."""
        callbacks, self._on_settled = self._on_settled, []
        for callback in callbacks:
            callback()

    def _record(
        self, now: float, complete: bool, error: BaseException | None, ended: bool
    ) -> CallRecord:
        facts = self._accumulator.facts if self._accumulator is not None else None
        record = CallRecord(
            call=self.call,
            cache=self.cache,
            key=self.key,
            started_at=self.started_at,
            ended_at=now,
            status=self.status,
            facts=facts,
        )
        if error is not None:
            record.error = error
            if not isinstance(error, Exception):
                # GeneratorExit, task cancellation, KeyboardInterrupt: the caller stopped
                # the call; that is not an upstream error (TELEMETRY.md).
                record.outcome = "cancelled"
            elif self.status is not None and 200 <= self.status < 300:
                record.outcome, record.error_type = "error", "stream_interrupted"
            else:
                record.outcome, record.error_type = _outcome_of(error)
        elif self.status is not None and self.status >= 400:
            record.outcome, record.error_type = "error", str(self.status)
        elif facts is not None and facts.error is not None and self.is_stream:
            record.outcome, record.error_type = "error", "stream_interrupted"
        elif facts is not None and facts.error_type is not None:
            record.outcome, record.error_type = "error", facts.error_type
        elif not complete and not ended:
            record.outcome = "cancelled"
        elif not complete and self.is_stream:
            record.outcome, record.error_type = "error", "stream_interrupted"
        return record

    def _report(self, record: CallRecord) -> None:
        try:
            self.observation.end(record)
        except Exception:  # telemetry never fails the call
            log.warning("llmtap: telemetry failed", exc_info=True)

    def _entry(self, now: float) -> CacheEntry:
        facts = self._accumulator.facts if self._accumulator is not None else None
        fingerprint = facts.system_fingerprint if facts is not None else None
        if self.old_fingerprint and fingerprint and fingerprint != self.old_fingerprint:
            log.warning(
                "llmtap: system_fingerprint changed from %s to %s for key %s: "
                "the provider's backend changed since this answer was recorded",
                self.old_fingerprint,
                fingerprint,
                self.key,
            )
        ttl = self.control.ttl if self.control.ttl is not None else self.ttl
        call = self.call
        return CacheEntry(
            status=self.status or 200,
            headers=allowed_headers(self.upstream_headers),
            body=b"".join(self._decoded),
            created_at=now,
            chunks=self._chunks if self.is_stream else None,
            expires_at=None if ttl is None else now + ttl,
            system_fingerprint=fingerprint,
            summary={
                "operation": call.operation,
                "api": call.api_type,
                "host": call.host,
                "path": call.path,
                "model": call.model,
                "stream": call.stream,
            },
            key_material=self.material or {},
            usage=facts.usage if facts is not None else None,
            response=None if facts is None else response_summary(facts),
        )


def _outcome_of(error: BaseException) -> tuple[str, str]:
    if isinstance(error, Exception):
        return "error", _error_type(error)
    return "cancelled", _error_type(error)
