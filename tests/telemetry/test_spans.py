"""Span attributes (TELEMETRY.md "One span per intercepted call"), through the real openai SDK."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from telemetry_rig import BASE_URL, Rig, make_rig

import llmtap
import llmtap.httpx2
from llmtap.telemetry import content

MESSAGES = [{"role": "user", "content": "Say something about the weather in a few words, please."}]
LONG = [{"role": "user", "content": " ".join(["tell me a long story about telemetry"] * 8)}]


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def sdk(rig: Rig, inner: Any = None, **kwargs: Any) -> openai.OpenAI:
    client = httpx2.Client(transport=rig.transport(inner, **kwargs))
    return openai.OpenAI(api_key="sk-test", base_url=BASE_URL, http_client=client, max_retries=0)


def attrs(rig: Rig) -> dict[str, Any]:
    return dict(rig.span().attributes or {})


def test_chat_not_streamed(rig: Rig) -> None:
    answer = sdk(rig).chat.completions.create(
        model="gpt-4o-mini",
        seed=7,
        temperature=0.5,
        top_p=0.9,
        max_completion_tokens=200,
        stop="END",
        frequency_penalty=0.1,
        presence_penalty=0.2,
        response_format={"type": "json_object"},
        service_tier="flex",
        messages=LONG,
    )
    span = rig.span()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    a = attrs(rig)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["server.address"] == "api.openai.com"
    assert a["server.port"] == 443
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.max_tokens"] == 200
    assert a["gen_ai.request.stop_sequences"] == ("END",)
    assert a["gen_ai.request.frequency_penalty"] == 0.1
    assert a["gen_ai.request.presence_penalty"] == 0.2
    assert a["gen_ai.output.type"] == "json"
    assert a["openai.request.service_tier"] == "flex"
    assert a["openai.api.type"] == "chat_completions"
    assert "gen_ai.request.stream" not in a
    assert "gen_ai.request.choice.count" not in a
    assert a["gen_ai.response.id"] == answer.id
    assert a["gen_ai.response.model"] == answer.model
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens_details is not None
    assert a["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    cached = answer.usage.prompt_tokens_details.cached_tokens
    assert cached and a["gen_ai.usage.cache_read.input_tokens"] == cached
    assert a["openai.response.system_fingerprint"] == answer.system_fingerprint
    assert a["openai.response.service_tier"] == "default"
    assert a["llmtap.cache.result"] == "miss"
    assert len(a["llmtap.cache.key"]) == 64
    assert "error.type" not in a
    assert "gen_ai.response.time_to_first_chunk" not in a


def test_no_invented_defaults(rig: Rig) -> None:
    sdk(rig).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    a = attrs(rig)
    for name in ("seed", "temperature", "top_p", "max_tokens", "stop_sequences"):
        assert f"gen_ai.request.{name}" not in a
    assert "gen_ai.output.type" not in a
    assert "openai.request.service_tier" not in a
    assert a["llmtap.cache.result"] == "bypass"
    assert "llmtap.cache.key" not in a
    assert "http.request.resend_count" not in a  # first attempt (retry count 0)


def test_chat_stream_n2_reasoning(rig: Rig) -> None:
    stream = sdk(rig).chat.completions.create(
        model="o4-mini",
        seed=1,
        n=2,
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
        messages=MESSAGES,
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    a = attrs(rig)
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.request.choice.count"] == 2
    assert a["gen_ai.request.reasoning.level"] == "low"
    assert a["gen_ai.response.finish_reasons"] == ("stop", "stop")
    assert a["gen_ai.response.id"] == chunks[0].id
    assert a["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert reasoning and a["gen_ai.usage.reasoning.output_tokens"] == reasoning
    assert a["gen_ai.usage.audio.input_tokens"] == 0
    ttfc = a["gen_ai.response.time_to_first_chunk"]
    span = rig.span()
    assert span.start_time is not None and span.end_time is not None
    assert 0 <= ttfc <= (span.end_time - span.start_time) / 1e9


def test_tool_calls(rig: Rig) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    stream = sdk(rig).chat.completions.create(
        model="gpt-4o-mini", seed=3, tools=tools, stream=True, messages=MESSAGES
    )
    list(stream)
    a = attrs(rig)
    assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert "gen_ai.usage.input_tokens" not in a  # no include_usage: unknown, not 0
    assert rig.value("llmtap_stream_usage_missing_total") == 1


def test_embeddings(rig: Rig) -> None:
    result = sdk(rig).embeddings.create(model="text-embedding-3-small", input="hello", dimensions=8)
    span = rig.span()
    assert span.name == "embeddings text-embedding-3-small"
    a = attrs(rig)
    assert a["gen_ai.operation.name"] == "embeddings"
    assert a["gen_ai.embeddings.dimension.count"] == 8
    assert a["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert "gen_ai.usage.output_tokens" not in a
    assert "gen_ai.response.finish_reasons" not in a


def test_responses_api(rig: Rig) -> None:
    sdk(rig).responses.create(model="gpt-4o-mini", input="hello there")
    a = attrs(rig)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["openai.api.type"] == "responses"
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] > 0


@pytest.mark.parametrize("status", [429, 500])
def test_http_error(rig: Rig, status: int) -> None:
    rig.fake.fail_next(status)
    with pytest.raises(openai.APIStatusError):
        sdk(rig).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = rig.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"HTTP {status}"
    a = attrs(rig)
    assert a["error.type"] == str(status)
    assert a["http.response.status_code"] == status
    labels = {"error_type": str(status), "model": "gpt-4o-mini", "provider": "openai"}
    assert rig.value("llmtap_request_errors_total", **labels) == 1
    assert rig.value("llmtap_requests_total", outcome="error") == 1


def test_timeout(rig: Rig) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    with pytest.raises(openai.APITimeoutError):
        sdk(rig, httpx2.MockTransport(handler)).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    span = rig.span()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(rig)["error.type"] == "httpx2.ReadTimeout"
    assert [e.name for e in span.events] == ["exception"]
    assert rig.value("llmtap_request_errors_total", error_type="httpx2.ReadTimeout") == 1
    assert rig.value("llmtap_requests_in_flight") == 0


def test_connection_refused(rig: Rig) -> None:
    client = httpx2.Client(transport=rig.transport(httpx2.HTTPTransport()))
    api = openai.OpenAI(
        api_key="sk-test", base_url="http://127.0.0.1:9/v1", http_client=client, max_retries=0
    )
    with pytest.raises(openai.APIConnectionError):
        api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    a = attrs(rig)
    assert a["error.type"] == "httpx2.ConnectError"
    assert a["gen_ai.provider.name"] == "openai_compatible"
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == 9


def test_retry_count(rig: Rig) -> None:
    rig.fake.fail_next(500)
    client = httpx2.Client(transport=rig.transport())
    api = openai.OpenAI(api_key="sk-test", base_url=BASE_URL, http_client=client, max_retries=1)
    api.with_options(timeout=5).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    first, second = sorted(rig.spans(), key=lambda s: s.start_time or 0)
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["error.type"] == "500"
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.request.resend_count"] == 1
    assert "error.type" not in second.attributes


def test_hit(rig: Rig) -> None:
    api = sdk(rig)
    kwargs: Any = {"model": "gpt-4o-mini", "seed": 9, "messages": MESSAGES}
    first = api.chat.completions.create(**kwargs)
    second = api.chat.completions.create(**kwargs)
    assert second.id == first.id
    miss, hit = sorted(rig.spans(), key=lambda s: s.start_time or 0)
    a = dict(hit.attributes or {})
    assert a["llmtap.cache.result"] == "hit"
    assert a["llmtap.cache.key"] == (miss.attributes or {})["llmtap.cache.key"]
    assert a["llmtap.cache.age_seconds"] >= 0
    assert a["gen_ai.response.id"] == first.id
    assert a["gen_ai.response.model"] == first.model
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["openai.response.system_fingerprint"] == first.system_fingerprint
    assert not [name for name in a if name.startswith("gen_ai.usage.")]
    assert first.usage is not None
    assert a["llmtap.cache.saved.input_tokens"] == first.usage.prompt_tokens
    assert a["llmtap.cache.saved.output_tokens"] == first.usage.completion_tokens


def test_replay_miss(rig: Rig) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk(rig, mode="replay").chat.completions.create(
            model="gpt-4o-mini", seed=1, messages=MESSAGES
        )
    span = rig.span()
    assert span.status.status_code is StatusCode.ERROR
    assert "no stored answer" in (span.status.description or "")
    a = attrs(rig)
    # TELEMETRY.md: error.type is the HTTP status the caller got; the span says why
    assert a["error.type"] == "404" and a["http.response.status_code"] == 404
    assert a["llmtap.cache.result"] == "miss"
    assert not span.events  # llmtap's own answer, not an exception
    assert rig.value("llmtap_request_errors_total", error_type="404") == 1
    assert rig.fake.request_count == 0


def test_a_malformed_directive_is_still_an_observed_call(rig: Rig) -> None:
    """One span and one request per intercepted call, even one llmtap refuses."""
    with rig.client() as client:
        response = client.post(
            "/chat/completions",
            json={"model": "gpt-4o-mini", "seed": 1, "messages": MESSAGES},
            headers={"x-llmtap-cache": "ttl=soon"},
        )
    assert response.status_code == 400 and response.headers["x-llmtap-cache"] == "bypass"
    span = rig.span()
    assert span.status.status_code is StatusCode.ERROR
    assert "ttl" in (span.status.description or "")
    a = attrs(rig)
    assert a["error.type"] == "400" and a["llmtap.cache.result"] == "bypass"
    assert rig.value("llmtap_requests_total", outcome="error", cache="bypass") == 1
    assert rig.value("llmtap_requests_in_flight") == 0
    assert rig.fake.request_count == 0


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("api.openai.com", "openai"),
        ("myres.openai.azure.com", "azure.ai.openai"),
        ("api.deepseek.com", "deepseek"),
        ("api.groq.com", "groq"),
        ("api.mistral.ai", "mistral_ai"),
        ("api.x.ai", "x_ai"),
        ("api.perplexity.ai", "perplexity"),
        ("api.moonshot.ai", "moonshot_ai"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("openrouter.ai", "openrouter"),
        ("localhost", "openai_compatible"),
    ],
)
def test_provider_from_host(rig: Rig, host: str, provider: str) -> None:
    with rig.client() as client:
        client.post(f"https://{host}/v1/chat/completions", json={"model": "m", "messages": []})
    a = attrs(rig)
    assert a["gen_ai.provider.name"] == provider
    assert ("openai.api.type" in a) == (provider in ("openai", "openai_compatible"))
    assert rig.value("llmtap_requests_total", provider=provider) == 1


def test_provider_override(rig: Rig) -> None:
    sdk(rig, provider="my_gateway").chat.completions.create(model="m", messages=MESSAGES)
    assert attrs(rig)["gen_ai.provider.name"] == "my_gateway"
    assert rig.value("llmtap_requests_total", provider="my_gateway") == 1


def test_no_content_by_default(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(content.ENV, raising=False)
    sdk(rig).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    a = attrs(rig)
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    assert not any("sk-test" in str(v) for v in a.values())


def test_capture_content_keyword(rig: Rig) -> None:
    answer = sdk(rig, capture_content=True).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    a = attrs(rig)
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": MESSAGES[0]["content"]}]}
    ]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": answer.choices[0].message.content}],
            "finish_reason": "stop",
        }
    ]
    assert not any("sk-test" in str(v) for v in a.values())


def test_capture_event_only(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(content.ENV, "EVENT_ONLY")
    sdk(rig).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = rig.span()
    assert "gen_ai.input.messages" not in (span.attributes or {})
    (event,) = span.events
    assert event.name == content.EVENT_NAME
    assert "gen_ai.output.messages" in (event.attributes or {})


def test_legacy_true_warns_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(content.ENV, "true")
    monkeypatch.setattr(content, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="llmtap"):
        api = sdk(rig)
        sdk(rig)
    assert len([r for r in caplog.records if "legacy" in r.getMessage()]) == 1
    api.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert "gen_ai.input.messages" in attrs(rig)


def test_keyword_overrides_env(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(content.ENV, "SPAN_ONLY")
    sdk(rig, capture_content=False).chat.completions.create(model="m", messages=MESSAGES)
    assert "gen_ai.input.messages" not in attrs(rig)


def test_bad_capture_value() -> None:
    with pytest.raises(ValueError, match="capture_content"):
        llmtap.httpx2.Transport(capture_content="sometimes", metrics=None)
