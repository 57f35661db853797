"""The seam between the core and telemetry.

The core reports each intercepted call once, as a :class:`CallRecord`, through
an :class:`Observation` begun when the call starts (so a span can start then
and carry sampling attributes). The null implementation costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from llmtap._core.answer import AnswerAccumulator, AnswerFacts, summary_facts
from llmtap._core.entry import CacheEntry
from llmtap._core.request import LLMCall


@dataclass(slots=True)
class CallRecord:
    """Everything known about one call when it ends."""

    call: LLMCall
    cache: str
    key: str | None
    started_at: float
    ended_at: float
    status: int | None = None
    facts: AnswerFacts | None = None
    outcome: str = "success"
    error_type: str | None = None
    error: BaseException | None = None
    entry_age: float | None = None
    saved_usage: dict[str, Any] | None = None
    resend_count: int | None = None
    # On a hit: the stored entry, parsed only if a span wants its response attributes.
    entry: CacheEntry | None = None

    def hit_facts(self, text: bool = False) -> AnswerFacts | None:
        """The recorded answer's facts on a hit (``facts`` itself, when the core set it).

        Read from the entry's stored response summary, unless ``text`` (content
        capture) needs the answer's words: only then is the stored body parsed again.
        """
        entry = self.entry
        if self.facts is not None or entry is None:
            return self.facts
        if not text and entry.response is not None:
            facts = summary_facts(entry.response, entry.system_fingerprint)
            if facts is not None:
                return facts
        return entry_facts(entry)


def entry_facts(entry: CacheEntry) -> AnswerFacts:
    """Re-read a stored answer: its response id, model, finish reasons and usage."""
    accumulator = AnswerAccumulator(entry.is_stream)
    for chunk in entry.iter_chunks():
        accumulator.feed(chunk, 0.0)
    accumulator.end_of_body(0.0)
    facts = accumulator.facts
    # Replay timing is not upstream's.
    facts.first_token_at = facts.last_token_at = facts.first_chunk_at = None
    return facts


class Observation(Protocol):
    def end(self, record: CallRecord) -> None: ...


class Telemetry(Protocol):
    def begin(self, call: LLMCall, now: float) -> Observation: ...

    def cache_error(self, backend: str, op: str, call: LLMCall) -> None: ...


class _NullObservation:
    __slots__ = ()

    #: Nobody reads the answer's facts: the exchange may skip parsing a whole
    #: JSON answer it is not storing.
    passive = True

    def end(self, record: CallRecord) -> None:
        pass


class NullTelemetry:
    """No spans, no metrics."""

    _observation = _NullObservation()

    def begin(self, call: LLMCall, now: float) -> Observation:
        return self._observation

    def cache_error(self, backend: str, op: str, call: LLMCall) -> None:
        pass
