"""What one request decides, and the helpers every API's builder shares.

Everything here is a pure function of the request body. Word choice depends only
on the *content* fields (seed, messages, prompt, tools, ...), never on ``stream``,
``stream_options`` or the length limits, so a streamed answer spells the same
text as the non-streamed one, ``include_usage`` changes nothing but the usage
fields, and a ``max_tokens``-truncated answer is a prefix of the full one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

JSON = dict[str, Any]

SYSTEM_FINGERPRINT = "fp_llmtap_fake"

WORDS = (
    "amber", "anchor", "autumn", "beacon", "birch", "bright", "canyon", "cedar",
    "cinder", "clover", "comet", "copper", "coral", "crystal", "dawn", "delta",
    "ember", "falcon", "fern", "forest", "glacier", "granite", "harbor", "hazel",
    "horizon", "island", "ivory", "jasmine", "lagoon", "lantern", "linen", "maple",
    "meadow", "mesa", "meteor", "mist", "nectar", "north", "oasis", "ocean",
    "orchid", "pebble", "pine", "prairie", "quartz", "quiet", "raven", "reef",
    "ridge", "river", "saffron", "shore", "silver", "slate", "spruce", "summit",
    "thistle", "tide", "timber", "valley", "velvet", "willow", "winter", "zephyr",
)  # fmt: skip

# Fields that decide what the fake "model" says (API.md: the seed and the messages,
# in whichever field each API carries them, and what shapes the answer: tools,
# dimensions, reasoning). Nothing else changes the words, not even the model name.
_CONTENT_FIELDS = (
    "seed", "messages", "prompt", "input", "instructions", "tools",
    "dimensions", "reasoning_effort", "reasoning", "suffix",
)  # fmt: skip
# Fields that additionally decide the ids (but not the words).
_ID_FIELDS = ("n", "max_tokens", "max_completion_tokens", "max_output_tokens")


class RequestContext:
    """Hashes and shared fields of one request."""

    def __init__(self, kind: str, req: JSON) -> None:
        self.req = req
        content = {k: req[k] for k in _CONTENT_FIELDS if k in req} | {"~kind": kind}
        self.content_digest = sha(content)
        ids = {k: req[k] for k in _ID_FIELDS if k in req} | {"~stream": self.stream}
        self.id_hex = sha({"content": self.content_digest.hex(), **ids}).hex()[:24]
        self.created = 1_700_000_000 + int.from_bytes(self.content_digest[:3], "big") % 10_000_000
        model = req.get("model")
        self.model = model if isinstance(model, str) else "fake-model"

    @property
    def stream(self) -> bool:
        return self.req.get("stream") is True

    @property
    def include_usage(self) -> bool:
        opts = self.req.get("stream_options")
        return isinstance(opts, dict) and opts.get("include_usage") is True

    @property
    def n(self) -> int:
        n = self.req.get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128 else 1

    def limit(self, *names: str) -> int | None:
        for name in names:
            value = self.req.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return None

    def words(self, index: int) -> list[str]:
        """12-30 words for choice ``index``; choice 0 never depends on ``n``."""
        digest = hashlib.sha256(self.content_digest + index.to_bytes(4, "big")).digest()
        count = 12 + digest[0] % 19
        return [WORDS[b % len(WORDS)] for b in digest[1 : 1 + count]]

    def call_id(self, index: int) -> str:
        """Tool call ids depend on content only: streamed and plain answers agree."""
        return f"call_{sha([self.content_digest.hex(), index]).hex()[:24]}"

    @property
    def reasoning_tokens(self) -> int:
        effort = self.req.get("reasoning_effort")
        reasoning = self.req.get("reasoning")
        if self.model.startswith("o") or effort or (isinstance(reasoning, dict) and reasoning):
            return 16 * (1 + self.content_digest[4] % 8)
        return 0

    def tool(self) -> tuple[str, str] | None:
        """``(name, arguments)`` of the call to the first tool, if the request offers tools."""
        tools = self.req.get("tools")
        if not isinstance(tools, list) or not tools or self.req.get("tool_choice") == "none":
            return None
        first: JSON = tools[0] if isinstance(tools[0], dict) else {}
        fn: JSON = first["function"] if isinstance(first.get("function"), dict) else first
        name = fn["name"] if isinstance(fn.get("name"), str) else "tool"
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, dict) else None
        if not isinstance(props, dict) or not props:
            props = {"query": {"type": "string"}}
        words = self.words(1_000_000)
        args = {
            key: example_value(props[key], words[i % len(words)], self.content_digest[i % 32])
            for i, key in enumerate(sorted(props))
        }
        return str(name), json.dumps(args, separators=(",", ":"))


def sha(obj: object) -> bytes:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def example_value(spec: object, word: str, byte: int) -> object:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("enum"), list) and spec["enum"]:
        return spec["enum"][byte % len(spec["enum"])]
    if kind == "integer":
        return byte
    if kind == "number":
        return byte / 4
    if kind == "boolean":
        return byte % 2 == 0
    if kind == "array":
        return [word]
    if kind == "object":
        return {}
    return word


def fragments(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(text_of(p.get("text") if isinstance(p, dict) else p) for p in content)
    return ""


def count_tokens(text: str) -> int:
    return len(text.split())


def deltas(words: list[str], complete: bool) -> list[str]:
    """The stream deltas ``"word "``; the last word gets a full stop when complete."""
    if not words:
        return []
    return [w + " " for w in words[:-1]] + [words[-1] + ("." if complete else "")]


def choice_texts(ctx: RequestContext, n: int, *limit_names: str) -> list[tuple[list[str], bool]]:
    """Per choice: its deltas and whether it ran to completion (else truncated by a limit)."""
    limit = ctx.limit(*limit_names)
    out = []
    for i in range(n):
        words = ctx.words(i)
        complete = limit is None or limit >= len(words)
        out.append((deltas(words if complete else words[:limit], complete), complete))
    return out


def cached_tokens(prompt_tokens: int) -> int:
    return prompt_tokens // 16 * 16 if prompt_tokens >= 32 else 0
