"""Explaining a miss: the nearest stored request and the fields that differ.

pytest_httpx lists what it tried; LiteLLM shows a canonical diff. A replay
miss here names the mode, the key, the operation and the model, and where the
store holds entries for the same host, path and model, the nearest one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_MISSING = object()
_MAX_FIELDS = 12
#: How to record, outside pytest (the plugin gives its own command instead).
RECORD_ADVICE = (
    "Record it by running once with mode='read_write' or 'record' "
    "(LLMTAP_MODE=record, or --llmtap-mode=record under pytest)."
)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves: ``{"messages.0.content": "hi", ...}``."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list | tuple) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: value}


def differing_fields(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The dotted paths whose values differ between two key materials."""
    fa, fb = flatten(a), flatten(b)
    return sorted(p for p in fa.keys() | fb.keys() if fa.get(p, _MISSING) != fb.get(p, _MISSING))


def nearest(
    material: dict[str, Any], candidates: Iterable[tuple[str, dict[str, Any]]]
) -> tuple[str, list[str]] | None:
    """The candidate key with the fewest differing fields among same host, path and model."""
    model = material.get("body", {}).get("model")
    best: tuple[str, list[str]] | None = None
    for key, other in candidates:
        same_place = other.get("host") == material.get("host") and other.get(
            "path"
        ) == material.get("path")
        if not same_place or other.get("body", {}).get("model") != model:
            continue
        diff = differing_fields(material, other)
        if best is None or len(diff) < len(best[1]):
            best = (key, diff)
    return best


def miss_message(
    mode: str,
    key: str | None,
    operation: str,
    model: str | None,
    reason: str,
    near: tuple[str, list[str]] | None,
) -> str:
    parts = [
        f"llmtap {mode} mode: no stored answer for this {operation} call "
        f"(model {model!r}, key {key}) and the network is not used in {mode} mode: {reason}."
    ]
    if near is not None:
        fields = near[1][:_MAX_FIELDS]
        more = len(near[1]) - len(fields)
        listed = ", ".join(fields) + (f" and {more} more" if more > 0 else "")
        parts.append(f"Nearest stored entry: {near[0]}, differing in: {listed}.")
    else:
        parts.append("The store holds no entry for this host, path and model.")
    parts.append(RECORD_ADVICE)
    return " ".join(parts)
