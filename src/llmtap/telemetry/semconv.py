"""GenAI semantic-convention attributes: provider, request, response and usage.

Kept apart from the span code so the mapping can be read against TELEMETRY.md
line by line. Every request attribute is set only when the request carries
the field: never an invented default (peers that fabricate ``temperature=1``
mislead dashboards). Usage is read from the last non-null ``usage`` object the
answer carried (``AnswerFacts.usage``), never summed and never estimated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeGuard

from llmtap._core.answer import AnswerFacts
from llmtap._core.request import LLMCall

# Exact hosts first, then suffixes (Azure resources are ``{name}.openai.azure.com``).
_HOSTS = {
    "api.openai.com": "openai",
    "api.deepseek.com": "deepseek",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "api.moonshot.ai": "moonshot_ai",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "openrouter.ai": "openrouter",
}
_SUFFIXES = ((".openai.azure.com", "azure.ai.openai"),)
OPENAI_PROVIDERS = frozenset({"openai", "openai_compatible"})
RETRY_HEADER = "x-stainless-retry-count"


def provider_for_host(host: str) -> str:
    """The ``gen_ai.provider.name`` well-known value for ``host`` (TELEMETRY.md table)."""
    host = host.lower().rstrip(".")
    known = _HOSTS.get(host)
    if known is not None:
        return known
    for suffix, name in _SUFFIXES:
        if host.endswith(suffix):
            return name
    return "openai_compatible"


def span_name(call: LLMCall) -> str:
    model = call.model
    return f"{call.operation} {model}" if model else call.operation


def start_attributes(call: LLMCall, provider: str) -> dict[str, Any]:
    """The attributes a sampler sees: set when the span starts."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": call.operation,
        "gen_ai.provider.name": provider,
        "server.address": call.host,
        "server.port": call.port,
    }
    model = call.model
    if model:
        attrs["gen_ai.request.model"] = model
    return attrs


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int64(value: Any) -> int | None:
    """A whole number as an int attribute: OTLP encodes signed 64-bit integers only, and
    drops (with a logged traceback) an attribute beyond them, such as a u64 seed."""
    if _number(value) and float(value).is_integer() and -(2**63) <= value < 2**63:
        return int(value)
    return None


_FLOATS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
_MAX_TOKENS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# Body fields that can give a request attribute besides the OpenAI-only ones; a body
# rarely has more than two or three of them, so only those present are looked at.
_READ = frozenset(
    {"seed", *_FLOATS, *_MAX_TOKENS, "stop", "n", "stream", "reasoning_effort", "reasoning"}
    | {"response_format", "text", "dimensions", "encoding_format", "previous_response_id"}
)


def request_attributes(call: LLMCall, provider: str) -> dict[str, Any]:
    """What the request asked for, only where it asked."""
    body = call.body
    attrs: dict[str, Any] = {}
    present = _READ.intersection(body)
    if present:
        _asked(body, present, call.operation, attrs)
    if provider in OPENAI_PROVIDERS:
        api = call.api_type
        attrs["openai.api.type"] = "chat_completions" if api == "chat" else api
        tier = body.get("service_tier")
        if isinstance(tier, str) and tier != "auto":
            attrs["openai.request.service_tier"] = tier
    retries = resend_count(call)
    if retries:
        attrs["http.request.resend_count"] = retries
    return attrs


def _asked(
    body: dict[str, Any], present: frozenset[str], operation: str, attrs: dict[str, Any]
) -> None:
    seed = _int64(body.get("seed"))
    if seed is not None:
        attrs["gen_ai.request.seed"] = seed
    for name in _FLOATS:
        value = body[name] if name in present else None
        if _number(value):
            attrs[f"gen_ai.request.{name}"] = float(value)
    for name in _MAX_TOKENS:
        value = _int64(body.get(name))
        if value is not None:
            attrs["gen_ai.request.max_tokens"] = value
            break
    stop = body.get("stop")
    if isinstance(stop, str):
        attrs["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop and all(isinstance(s, str) for s in stop):
        attrs["gen_ai.request.stop_sequences"] = list(stop)
    n = _int64(body.get("n"))
    if n is not None and n != 1:
        attrs["gen_ai.request.choice.count"] = n
    if body.get("stream") is True:
        attrs["gen_ai.request.stream"] = True
    effort = body.get("reasoning_effort")
    reasoning = body.get("reasoning")
    if not isinstance(effort, str) and isinstance(reasoning, dict):
        effort = reasoning.get("effort")
    if isinstance(effort, str):
        attrs["gen_ai.request.reasoning.level"] = effort
    output_type = _output_type(body)
    if output_type is not None:
        attrs["gen_ai.output.type"] = output_type
    if operation == "embeddings":
        dims = _int64(body.get("dimensions"))
        if dims is not None:
            attrs["gen_ai.embeddings.dimension.count"] = dims
        fmt = body.get("encoding_format")
        if isinstance(fmt, str):
            attrs["gen_ai.request.encoding_formats"] = [fmt]
    previous = body.get("previous_response_id")
    if isinstance(previous, str):
        attrs["gen_ai.request.previous_response.id"] = previous


def resend_count(call: LLMCall) -> int | None:
    """The SDK's retry ordinal (``x-stainless-retry-count``); one span is one attempt."""
    raw = call.headers.get(RETRY_HEADER)
    if raw is None:
        return None
    try:
        return max(0, int(raw))
    except ValueError:
        return None


def _output_type(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        return None
    return "json" if fmt["type"] in ("json_object", "json_schema") else "text"


@dataclass(slots=True)
class Usage:
    """One answer's token counts, under the conventions' names."""

    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    modality: dict[str, int] = field(default_factory=dict)


def _int(obj: Any, name: str) -> int | None:
    value = obj.get(name) if type(obj) is dict else None
    return value if type(value) is int else None


def _either(obj: dict[str, Any], first: str, second: str) -> int | None:
    value = obj.get(first)
    if type(value) is int:
        return value
    value = obj.get(second)
    return value if type(value) is int else None


_MODALITIES = {
    direction: tuple(
        (f"{modality}_tokens", f"gen_ai.usage.{modality}.{direction}_tokens")
        for modality in ("text", "audio", "image")
    )
    for direction in ("input", "output")
}


def read_usage(usage: dict[str, Any] | None) -> Usage | None:
    """Chat/completions/embeddings (``prompt_tokens``) and Responses (``input_tokens``)."""
    if type(usage) is not dict:
        return None
    # Read on every call with telemetry on: plain lookups, no helper per field.
    result = Usage(
        input=_either(usage, "prompt_tokens", "input_tokens"),
        output=_either(usage, "completion_tokens", "output_tokens"),
    )
    inputs = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    if type(inputs) is dict:
        result.cache_read = _int(inputs, "cached_tokens")
        result.cache_write = _either(inputs, "cache_write_tokens", "cache_creation_tokens")
        _modality(result, inputs, "input")
    outputs = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
    if type(outputs) is dict:
        result.reasoning = _int(outputs, "reasoning_tokens")
        _modality(result, outputs, "output")
    return result


def _modality(result: Usage, details: dict[str, Any], direction: str) -> None:
    for field_name, attribute in _MODALITIES[direction]:
        count = details.get(field_name)
        if type(count) is int:
            result.modality[attribute] = count


def usage_attributes(usage: Usage) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    pairs = (
        ("gen_ai.usage.input_tokens", usage.input),
        ("gen_ai.usage.output_tokens", usage.output),
        ("gen_ai.usage.cache_read.input_tokens", usage.cache_read),
        ("gen_ai.usage.cache_write.input_tokens", usage.cache_write),
        ("gen_ai.usage.reasoning.output_tokens", usage.reasoning),
    )
    for name, value in pairs:
        if value is not None:
            attrs[name] = value
    attrs.update(usage.modality)
    return attrs


def response_attributes(facts: AnswerFacts, provider: str) -> dict[str, Any]:
    """The answer's identity and finish reasons (usage is separate: hits are not billed)."""
    attrs: dict[str, Any] = {}
    if facts.response_id:
        attrs["gen_ai.response.id"] = facts.response_id
    if facts.response_model:
        attrs["gen_ai.response.model"] = facts.response_model
    reasons = facts.ordered_finish_reasons()
    if reasons:
        attrs["gen_ai.response.finish_reasons"] = reasons
    if provider in OPENAI_PROVIDERS:
        if facts.system_fingerprint:
            attrs["openai.response.system_fingerprint"] = facts.system_fingerprint
        if facts.service_tier:
            attrs["openai.response.service_tier"] = facts.service_tier
    return attrs
