"""Modes and ``cache_when``: whether a call may read the cache, write it, or reach upstream.

API.md "Transport keywords". Misconfiguration fails at construction, naming the
value and the allowed ones.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from llmtap._core.control import CacheControl

Mode: TypeAlias = Literal["read_write", "read_only", "replay", "record", "off"]
MODES: tuple[str, ...] = ("read_write", "read_only", "replay", "record", "off")
CacheWhen: TypeAlias = (
    Literal["seeded", "deterministic", "always"] | Callable[[dict[str, Any]], bool]
)
CACHE_WHEN: tuple[str, ...] = ("seeded", "deterministic", "always")


def resolve_mode(mode: str | None) -> str:
    """The explicit mode, else ``LLMTAP_MODE``, else ``read_write``."""
    origin = "mode"
    if mode is None:
        mode = os.environ.get("LLMTAP_MODE") or "read_write"
        origin = "LLMTAP_MODE"
    if mode not in MODES:
        raise ValueError(f"{origin}={mode!r} is not a llmtap mode; allowed: {', '.join(MODES)}")
    return mode


def _is_seeded(body: dict[str, Any]) -> bool:
    seed = body.get("seed")
    if isinstance(seed, bool):
        return False
    return isinstance(seed, int) or (isinstance(seed, float) and seed.is_integer())


def _is_deterministic(body: dict[str, Any]) -> bool:
    temperature = body.get("temperature")
    zero = not isinstance(temperature, bool) and temperature in (0, 0.0)
    return _is_seeded(body) or zero


def _always(body: dict[str, Any]) -> bool:
    return True


def resolve_cache_when(cache_when: CacheWhen) -> Callable[[dict[str, Any]], bool]:
    """The predicate for one of the named forms, or the caller's own callable."""
    if callable(cache_when):
        return cache_when
    named = {"seeded": _is_seeded, "deterministic": _is_deterministic, "always": _always}
    if cache_when not in named:
        raise ValueError(
            f"cache_when={cache_when!r} is not understood; allowed: "
            f"{', '.join(repr(n) for n in CACHE_WHEN)} or a callable (body: dict) -> bool"
        )
    return named[cache_when]


@dataclass(frozen=True, slots=True)
class Decision:
    """What one call may do. ``offline`` means it must never reach upstream."""

    cacheable: bool
    read: bool
    write: bool
    offline: bool

    @property
    def keyed(self) -> bool:
        return self.cacheable or self.offline


@functools.lru_cache(maxsize=512)  # few distinct inputs; a frozen dataclass costs to build
def decide(mode: str, cacheable: bool, control: CacheControl) -> Decision:
    """Combine mode, ``cache_when`` and the per-request directive.

    ``replay`` never sends: a ``no-cache`` or ``refresh`` request in replay mode
    cannot be answered, and fails like a miss.
    """
    if mode == "off":
        return Decision(False, False, False, False)
    if mode == "replay":
        return Decision(cacheable, cacheable and control.read, False, True)
    if not cacheable:
        return Decision(False, False, False, False)
    if mode == "record" or control.directive == "refresh":
        return Decision(True, False, mode != "read_only" and control.write, False)
    return Decision(True, control.read, mode == "read_write" and control.write, False)
