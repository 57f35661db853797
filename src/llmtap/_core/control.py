"""Per-request cache control: the ``x-llmtap-cache`` header and ``extensions["llmtap"]``.

API.md "Per-request control". A malformed value is the caller's mistake and is
reported at that call, naming the value and the forms allowed; it is never
replaced by a silent default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEADER = "x-llmtap-cache"
HEADER_PREFIX = "x-llmtap-"
DIRECTIVES = ("no-cache", "no-store", "refresh")

_ALLOWED = (
    "allowed: 'no-cache', 'no-store', 'refresh', 'ttl=SECONDS', 'namespace=NAME' "
    "(comma-separated), or extensions['llmtap'] = "
    "{'cache': 'no-cache'|'no-store'|'refresh', 'ttl': seconds, 'namespace': 'name'}"
)


class ControlError(ValueError):
    """A per-request cache control value that llmtap cannot read."""


@dataclass(frozen=True, slots=True)
class CacheControl:
    """What one request asked of the cache, on top of the transport's settings."""

    directive: str | None = None
    ttl: float | None = None
    namespace: str | None = None

    @property
    def read(self) -> bool:
        return self.directive not in ("no-cache", "refresh")

    @property
    def write(self) -> bool:
        return self.directive != "no-store"


NO_CONTROL = CacheControl()


def _ttl(value: Any, origin: str) -> float:
    if isinstance(value, bool):
        raise ControlError(f"{origin}: ttl {value!r} is not a number of seconds; {_ALLOWED}")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ControlError(
            f"{origin}: ttl {value!r} is not a number of seconds; {_ALLOWED}"
        ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ControlError(f"{origin}: ttl {value!r} must be a positive number of seconds")
    return seconds


def _namespace(value: Any, origin: str) -> str:
    if not isinstance(value, str) or not value:
        raise ControlError(f"{origin}: namespace {value!r} must be a non-empty string; {_ALLOWED}")
    return value


def _directive(value: Any, origin: str) -> str:
    if value not in DIRECTIVES:
        raise ControlError(f"{origin}: unknown cache directive {value!r}; {_ALLOWED}")
    return str(value)


def parse_header(value: str) -> CacheControl:
    """Parse ``no-cache``, ``ttl=60, namespace=tests`` and the like."""
    origin = f"header {HEADER}: {value!r}"
    directive: str | None = None
    ttl: float | None = None
    namespace: str | None = None
    parts = [p.strip() for p in value.split(",")]
    if not any(parts):
        raise ControlError(f"{origin}: empty value; {_ALLOWED}")
    for part in parts:
        name, eq, arg = part.partition("=")
        name = name.strip().lower()
        # a repeated ttl or namespace is ambiguous: refuse it rather than pick one
        if eq and name == "ttl" and ttl is None:
            ttl = _ttl(arg.strip(), origin)
        elif eq and name in ("namespace", "ns") and namespace is None:
            namespace = _namespace(arg.strip(), origin)
        elif not eq and directive is None:
            directive = _directive(name, origin)
        else:
            raise ControlError(f"{origin}: cannot read {part!r}; {_ALLOWED}")
    return CacheControl(directive, ttl, namespace)


def parse_extension(value: Any) -> CacheControl:
    """Parse ``request.extensions["llmtap"]``."""
    origin = "request.extensions['llmtap']"
    if not isinstance(value, Mapping):
        raise ControlError(f"{origin} must be a dict, got {value!r}; {_ALLOWED}")
    unknown = set(value) - {"cache", "ttl", "namespace"}
    if unknown:
        raise ControlError(f"{origin}: unknown keys {sorted(unknown)!r}; {_ALLOWED}")
    directive = value.get("cache")
    ttl = value.get("ttl")
    namespace = value.get("namespace")
    return CacheControl(
        None if directive is None else _directive(directive, origin),
        None if ttl is None else _ttl(ttl, origin),
        None if namespace is None else _namespace(namespace, origin),
    )


def read_control(header: str | None, extension: Any) -> CacheControl:
    """Combine header and extension; the extension, set in code, wins field by field."""
    if header is None and extension is None:
        return NO_CONTROL
    from_header = NO_CONTROL if header is None else parse_header(header)
    if extension is None:
        return from_header
    from_ext = parse_extension(extension)
    return CacheControl(
        from_ext.directive or from_header.directive,
        from_ext.ttl if from_ext.ttl is not None else from_header.ttl,
        from_ext.namespace or from_header.namespace,
    )
