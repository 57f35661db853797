"""The Grafana dashboard (dashboards/llmtap.json), proven three ways.

1. Lint: the rules of Grafana's dashboard-linter, re-implemented (the Go tool
   cannot be installed here): a ``datasource`` variable, ``job``/``instance``
   (and ``provider``/``model``) variables and matchers, ``$__rate_interval`` in
   every range, every counter under ``rate``/``increase``, units, titles,
   descriptions; plus PromQL syntax (promql-parser) and the panel list of
   TELEMETRY.md (and of dashboards/README.md).
2. Catalogue: every metric and label a panel names is produced by
   ``llmtap.Metrics`` (a renamed metric or label fails here, offline).
3. Live: a real Prometheus scrapes a live exporter that a realistic workload
   (through llmtap transports and FakeUpstream) filled; every panel query, with
   Grafana's variables substituted, must be accepted and return a series.

The checkers return lists of problems, and the negative tests run them on
mutated copies of the dashboard to show that they do catch breakage.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import promql_parser
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import llmtap
import llmtap.httpx
import llmtap.httpx2
from llmtap.testing import FakeUpstream
from prometheus_server import Exporter, PrometheusServer, prometheus_binary

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "llmtap.json"
RATE_SENTINEL = "4321s"  # stands for $__rate_interval while linting: a range nobody writes
RANGE_FUNCS = {"rate", "irate", "increase"}
COUNTER_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
VARIABLES = ("job", "instance", "provider", "model")
# Grafana unit ids used by this dashboard (a subset of grafana-data's valueFormats categories).
GRAFANA_UNITS = {"reqps", "percentunit", "s", "ms", "short", "none", "ops", "cps", "percent"}
# TELEMETRY.md, "The dashboard": the panels it lists, by the title each has here.
REQUIRED_PANELS = {
    "Requests/s",
    "Error ratio",
    "p95 latency",
    "p95 time to first token",
    "Tokens/s",
    "In flight",
    "Requests by model and outcome",
    "Latency p50 / p90 / p99 by model",
    "Time to first token p50 / p95 / p99",
    "Time per output token p50 / p95",
    "Latency distribution",
    "Tokens/s by model and type",
    "Provider prompt-cache ratio",
    "llmtap cache hit ratio",
    "Tokens saved by the llmtap cache",
    "Tokens per request",
    "Finish reasons",
    "Truncation ratio (length)",
    "Errors by type",
    "Streams without usage",
    # dashboards/README.md: the panel beyond TELEMETRY.md's list
    "Cache store errors",
}


# ----------------------------------------------------------------- dashboard model


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-row panel, including those inside collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def substitute(expr: str, rate_interval: str, values: dict[str, str] | None = None) -> str:
    """Grafana's interpolation of the macros and (regex-form) variables in ``expr``."""
    macros = {"__rate_interval": rate_interval, "__interval": "15s", "__range": "5m"}
    if values is not None:
        macros |= values

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return macros.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query")
    return str(query.get("query", "") if isinstance(query, dict) else query or "")


# ------------------------------------------------------------------ PromQL walking


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: dict[str, tuple[str, str]]  # label -> (op, value)
    range_func: str | None  # "rate" when the selector is rate(<it>[...]), else None
    range: Any  # the MatrixSelector range (timedelta) or None


def _op(matcher: Any) -> str:
    text = str(matcher.op)
    return {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}.get(
        text.rsplit(".", 1)[-1], text
    )


def walk(node: Any, call: str | None = None) -> Iterator[tuple[str, Any, str | None]]:
    """Yield ("selector", VectorSelector-ish, range func) and ("agg", AggregateExpr, None)."""
    if isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from walk(arg, node.func.name)
    elif isinstance(node, promql_parser.MatrixSelector):
        yield "matrix", node, call
    elif isinstance(node, promql_parser.VectorSelector):
        yield "vector", node, None
    elif isinstance(node, promql_parser.AggregateExpr):
        yield "agg", node, None
        yield from walk(node.expr)
        if node.param is not None:
            yield from walk(node.param)
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from walk(node.lhs)
        yield from walk(node.rhs)
    elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr):
        yield from walk(node.expr)
    elif isinstance(node, promql_parser.SubqueryExpr):
        yield "subquery", node, call
        yield from walk(node.expr)


def selectors(node: Any) -> list[Selector]:
    found = []
    for kind, item, func in walk(node):
        if kind not in ("matrix", "vector"):
            continue
        vector = item.vector_selector if kind == "matrix" else item
        matchers = {m.name: (_op(m), m.value) for m in vector.matchers.matchers}
        found.append(
            Selector(
                name=vector.name or matchers.get("__name__", ("", ""))[1],
                matchers=matchers,
                range_func=func if kind == "matrix" else None,
                range=item.range if kind == "matrix" else None,
            )
        )
    return found


def parse(expr: str) -> Any:
    return promql_parser.parse(substitute(expr, RATE_SENTINEL))


SENTINEL_RANGE = promql_parser.parse_duration(RATE_SENTINEL)


# -------------------------------------------------------------------------- linting


def lint(dashboard: dict[str, Any]) -> list[str]:
    """The dashboard-linter rules (and ours) as a list of problems; empty is clean."""
    problems: list[str] = []
    add = problems.append
    if "__inputs" in dashboard:
        add("dashboard: uses __inputs (file provisioning cannot resolve it); use a variable")
    if dashboard.get("schemaVersion") != 39:
        add(f"dashboard: schemaVersion {dashboard.get('schemaVersion')} != 39")
    if not dashboard.get("uid") or not dashboard.get("title"):
        add("dashboard: needs a uid and a title")

    variables_ = variables(dashboard)
    # template-datasource-rule
    sources = [v for v in variables_.values() if v.get("type") == "datasource"]
    source = variables_.get("datasource")
    if len(sources) != 1 or source is None or source.get("type") != "datasource":
        add("template-datasource-rule: exactly one variable 'datasource' of type datasource")
    elif source.get("query") != "prometheus" or source.get("label") != "Data source":
        add("template-datasource-rule: datasource variable: query prometheus, label 'Data source'")
    # template-job-rule, template-instance-rule (+ provider, model), on-time-change reload
    for name in VARIABLES:
        var = variables_.get(name)
        if var is None:
            add(f"template-{name}-rule: no '{name}' variable")
            continue
        if var.get("type") != "query":
            add(f"template-{name}-rule: '{name}' must be a query variable")
        if var.get("datasource", {}).get("uid") not in ("$datasource", "${datasource}"):
            add(f"template-{name}-rule: '{name}' must query $datasource")
        if not (var.get("multi") and var.get("includeAll")):
            add(f"template-{name}-rule: '{name}' must be multi-value with All")
        if var.get("refresh") != 2:
            add(f"template-on-time-change-reload-rule: '{name}' refresh must be 2")
        query = variable_query(var)
        if not re.fullmatch(rf"label_values\((.+),\s*{name}\)", query):
            add(f"template-{name}-rule: query {query!r} is not label_values(..., {name})")

    seen_ids: set[int] = set()
    for panel in panels(dashboard):
        title = panel.get("title") or f"panel {panel.get('id')}"
        if panel.get("id") in seen_ids:
            add(f"{title}: duplicate panel id {panel.get('id')}")
        seen_ids.add(panel.get("id"))
        # panel-title-description-rule
        if not str(panel.get("title", "")).strip():
            add(f"panel-title-description-rule: panel {panel.get('id')} has no title")
        if not str(panel.get("description", "")).strip():
            add(f"panel-title-description-rule: {title}: no description")
        # panel-units-rule (heatmaps carry theirs on the y axis too)
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if unit not in GRAFANA_UNITS:
            add(f"panel-units-rule: {title}: unit {unit!r} is not a Grafana unit")
        if panel.get("type") == "heatmap":
            if panel.get("options", {}).get("yAxis", {}).get("unit") not in GRAFANA_UNITS:
                add(f"panel-units-rule: {title}: heatmap y axis has no unit")
            if any(t.get("format") != "heatmap" for t in panel.get("targets", [])):
                add(f"{title}: heatmap targets need format 'heatmap'")
        # panel-datasource-rule
        if panel.get("datasource", {}).get("uid") not in ("$datasource", "${datasource}"):
            add(f"panel-datasource-rule: {title}: datasource must be $datasource")
        # panel-no-targets-rule
        if not [t for t in panel.get("targets", []) if str(t.get("expr", "")).strip()]:
            add(f"panel-no-targets-rule: {title}: no query")

    for panel, target in targets(dashboard):
        title = panel.get("title")
        where = f"{title} [{target.get('refId')}]"
        if target.get("datasource", {}).get("uid") not in ("$datasource", "${datasource}"):
            add(f"panel-datasource-rule: {where}: target datasource must be $datasource")
        expr = str(target.get("expr", ""))
        try:
            tree = parse(expr)
        except ValueError as exc:
            add(f"promql: {where}: {exc}: {expr}")
            continue
        for kind, item, func in walk(tree):
            if kind == "subquery":
                add(f"{where}: subqueries are not used here")
            elif kind == "matrix":
                # target-rate-interval-rule
                if func not in RANGE_FUNCS:
                    add(f"{where}: range vector under {func}(), expected rate/increase")
                if item.range != SENTINEL_RANGE:
                    add(f"target-rate-interval-rule: {where}: range is not $__rate_interval")
        for selector in selectors(tree):
            # target-counter-agg-rule (counters and histogram series)
            if selector.name.endswith(COUNTER_SUFFIXES) and selector.range_func not in RANGE_FUNCS:
                add(f"target-counter-agg-rule: {where}: {selector.name} not under rate/increase")
            # target-job-rule, target-instance-rule (+ provider, model)
            for name in VARIABLES:
                if selector.matchers.get(name) != ("=~", f"${name}"):
                    add(f'target-{name}-rule: {where}: {selector.name} lacks {name}=~"${name}"')
    return problems


# ------------------------------------------------------------------ metric catalogue

PROMPT = (
    "You are a careful assistant. Summarise in two sentences why a transport-level cache "
    "for large language model calls saves money, speeds up tests and keeps traces and "
    "metrics in one place, and mention one risk of caching non-deterministic answers."
)
MODELS = ("gpt-4o-mini", "o4-mini", "llama-3.1-8b")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def messages(model: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{PROMPT} ({model})"}]


class DownStore(llmtap.MemoryCache):
    """A cache store that is down (as Redis refusing connections): every read and
    write fails, so llmtap goes on without it and counts llmtap_cache_errors_total."""

    name = "down"

    def get(self, key: str) -> bytes | None:
        raise ConnectionError("cache store is down")

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        raise ConnectionError("cache store is down")


def run_workload(
    metrics: llmtap.Metrics, fake: FakeUpstream, cache: llmtap.MemoryCache, *, server: bool
) -> int:
    """One burst of realistic traffic through llmtap's httpx2 (sync) and httpx (async)
    transports; returns how many calls it made. Given the same ``cache``, a second
    burst turns the seeded misses into hits."""
    calls = 0
    base = fake.base_url if server else "http://upstream.test/v1"
    inner2 = None if server else httpx2.MockTransport(fake)
    transport = llmtap.httpx2.Transport(transport=inner2, cache=cache, metrics=metrics)
    with httpx2.Client(transport=transport, base_url=base, timeout=10) as client:

        def post(body: dict[str, Any]) -> int:
            nonlocal calls
            calls += 1
            return client.post("/chat/completions", json=body).status_code

        def stream(body: dict[str, Any]) -> None:
            nonlocal calls
            calls += 1
            with client.stream("POST", "/chat/completions", json=body) as response:
                for _ in response.iter_bytes():
                    pass

        for model in MODELS:
            seeded = {"model": model, "messages": messages(model), "seed": 7}
            assert post(seeded) == 200  # miss (first burst), hit (second)
            assert post(seeded) == 200  # hit
            stream(
                {
                    "model": model,
                    "messages": messages(model),
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
            )
            stream({"model": model, "messages": messages(model), "stream": True})
            assert post({"model": model, "messages": messages(model), "max_tokens": 4}) == 200
            assert post({"model": model, "messages": messages(model), "n": 3}) == 200
            assert post({"model": model, "messages": messages(model), "tools": TOOLS}) == 200
        fake.fail_next(429)
        assert post({"model": MODELS[0], "messages": messages("x")}) == 429
        fake.fail_next(500)
        assert post({"model": MODELS[2], "messages": messages("x")}) == 500
        fake.drop_stream_after(2)
        with pytest.raises((httpx2.HTTPError, httpx2.StreamError)):
            stream({"model": MODELS[1], "messages": messages("drop"), "stream": True})

    # a store that is down: the call goes upstream, its get and set count as cache errors
    down = llmtap.httpx2.Transport(
        transport=None if server else httpx2.MockTransport(fake), cache=DownStore(), metrics=metrics
    )
    with httpx2.Client(transport=down, base_url=base, timeout=10) as client:
        calls += 1
        seeded = {"model": MODELS[0], "messages": messages("store down"), "seed": 7}
        assert client.post("/chat/completions", json=seeded).status_code == 200

    async def async_part() -> int:
        inner = None if server else httpx.MockTransport(fake)
        transport = llmtap.httpx.AsyncTransport(
            transport=inner, cache=cache, metrics=metrics, provider="openai"
        )
        async with httpx.AsyncClient(transport=transport, base_url=base, timeout=10) as client:
            body = {
                "model": "gpt-4.1",
                "messages": messages("async"),
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with client.stream("POST", "/chat/completions", json=body) as response:
                async for _ in response.aiter_bytes():
                    pass
            response2 = await client.post(
                "/chat/completions",
                json={"model": "gpt-4.1", "messages": messages("async"), "seed": 1},
            )
            assert response2.status_code == 200
        return 2

    return calls + asyncio.run(async_part())


@dataclass
class Catalogue:
    """What ``llmtap.Metrics`` exposes: sample name -> label names (job/instance added)."""

    labels: dict[str, set[str]]
    families: set[str]
    exposition: bytes

    def problems(self, dashboard: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        for panel, target in targets(dashboard):
            where = f"{panel.get('title')} [{target.get('refId')}]"
            try:
                tree = parse(str(target.get("expr", "")))
            except ValueError:
                continue  # lint() reports syntax
            for selector in selectors(tree):
                known = self.labels.get(selector.name)
                if known is None:
                    problems.append(f"{where}: {selector.name} is not produced by llmtap.Metrics")
                    continue
                for label in selector.matchers:
                    if label not in known:
                        problems.append(f"{where}: {selector.name} has no label {label!r}")
            for kind, agg, _ in walk(tree):
                if kind == "agg" and agg.modifier is not None:
                    for label in agg.modifier.labels:
                        if not any(label in self.labels.get(s.name, set()) for s in selectors(agg)):
                            problems.append(f"{where}: aggregation by unknown label {label!r}")
        return problems


def catalogue() -> Catalogue:
    registry = CollectorRegistry()
    metrics = llmtap.Metrics(registry=registry)
    families = {family.name for family in registry.collect()}
    fake = FakeUpstream()
    run_workload(metrics, fake, llmtap.MemoryCache(), server=False)
    labels: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels, {"job", "instance"})
        # families whose children were never created still count, by type
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",),
        }.get(family.type, ("",))
        for suffix in suffixes:
            labels.setdefault(family.name + suffix, {"job", "instance"})
    return Catalogue(labels=labels, families=families, exposition=generate_latest(registry))


@pytest.fixture(scope="module")
def known() -> Catalogue:
    return catalogue()


# ------------------------------------------------------------------- static tests


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] == 39
    assert dashboard["id"] is None  # importable anywhere: Grafana assigns the id
    assert "__inputs" not in dashboard and "__requires" not in dashboard
    assert dashboard["uid"] == "llmtap-llm-calls"
    boxes = [(p["gridPos"], p.get("title")) for p in dashboard["panels"]]
    for i, (a, ta) in enumerate(boxes):
        for b, tb in boxes[i + 1 :]:
            overlap_x = a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            overlap_y = a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
            assert not (overlap_x and overlap_y), f"{ta!r} overlaps {tb!r}"
        assert a["x"] + a["w"] <= 24


def test_dashboard_passes_the_linter_rules() -> None:
    assert lint(load()) == []


def test_dashboard_has_every_panel_of_the_contract() -> None:
    titles = {p["title"] for p in panels(load())}
    assert REQUIRED_PANELS - titles == set()


def test_every_metric_and_label_a_panel_names_is_produced(known: Catalogue) -> None:
    assert known.problems(load()) == []


def test_every_metric_family_of_the_contract_is_on_the_dashboard(known: Catalogue) -> None:
    used = {s.name for _, t in targets(load()) for s in selectors(parse(t["expr"]))}
    used_families = {re.sub(r"(_total|_bucket|_sum|_count)$", "", name) for name in used}
    assert known.families - used_families == set()


def test_the_exposition_passes_promtool(known: Catalogue) -> None:
    promtool = Path(prometheus_binary()).with_name("promtool")
    if not promtool.exists():
        pytest.skip("promtool is not next to prometheus")
    result = subprocess.run(
        [str(promtool), "check", "metrics"],
        input=known.exposition,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


# ---------------------------------------------------------- negative (the checkers bite)


def mutate(edit: Callable[[str], str], panel_index: int = 0, target_index: int = 0) -> Any:
    dashboard = copy.deepcopy(load())
    target = panels(dashboard)[panel_index]["targets"][target_index]
    target["expr"] = edit(target["expr"])
    return dashboard


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda e: e[:-1], "promql"),  # a broken expression: unbalanced parenthesis
        (lambda e: e.replace("[$__rate_interval]", "[5m]"), "target-rate-interval-rule"),
        (lambda e: e.replace("$__rate_interval", "__rate_interval"), "promql"),
        (lambda e: "sum(llmtap_requests_total{" + e.split("{", 1)[1].split("}")[0] + "})",
         "target-counter-agg-rule"),
        (lambda e: e.replace('job=~"$job", ', ""), "target-job-rule"),
        (lambda e: e.replace('instance=~"$instance", ', ""), "target-instance-rule"),
        (lambda e: e.replace('provider=~"$provider", ', ""), "target-provider-rule"),
        (lambda e: e.replace(', model=~"$model"', ""), "target-model-rule"),
    ],
)  # fmt: skip
def test_lint_catches_a_broken_query(edit: Callable[[str], str], expected: str) -> None:
    problems = lint(mutate(edit))
    assert any(p.startswith(expected) for p in problems), problems


def test_lint_catches_broken_panels_and_variables() -> None:
    dashboard = copy.deepcopy(load())
    first = panels(dashboard)[0]
    first["description"] = ""
    del first["fieldConfig"]["defaults"]["unit"]
    variables(dashboard)["model"]["refresh"] = 1
    dashboard["templating"]["list"] = [
        v for v in dashboard["templating"]["list"] if v["name"] != "datasource"
    ]
    problems = "\n".join(lint(dashboard))
    for rule in (
        "panel-title-description-rule",
        "panel-units-rule",
        "template-on-time-change-reload-rule",
        "template-datasource-rule",
    ):
        assert rule in problems


def test_catalogue_catches_a_renamed_metric_or_label(known: Catalogue) -> None:
    renamed = mutate(lambda e: e.replace("llmtap_requests_total", "llmtap_request_total"))
    assert any("llmtap_request_total is not produced" in p for p in known.problems(renamed))
    relabelled = mutate(lambda e: e.replace("outcome", "result"), panel_index=1)
    assert any("no label 'result'" in p for p in known.problems(relabelled))
    regrouped = mutate(lambda e: e.replace("by (model, outcome)", "by (modle)"), panel_index=6)
    assert any("unknown label 'modle'" in p for p in known.problems(regrouped))


# ------------------------------------------------------------------- live Prometheus

LIVE_RATE_INTERVAL = "1m"  # covers the whole short run; Grafana would use >= 4 scrape intervals


def check_live(prometheus: PrometheusServer, expr: str) -> str | None:
    """None when Prometheus accepts ``expr`` and it returns a series with a finite value."""
    body = prometheus.query(expr)
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}"
    result = body["data"]["result"]
    if not result:
        return "no series"
    if not any(math.isfinite(float(r["value"][1])) for r in result):
        return f"no finite value: {result}"
    return None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    registry = CollectorRegistry()
    metrics = llmtap.Metrics(registry=registry)
    workdir = tmp_path_factory.mktemp("prometheus")
    with (
        FakeUpstream(chunk_delay=0.002, latency=0.005) as fake,
        Exporter(registry) as exporter,
        PrometheusServer(workdir, [exporter.target]) as prometheus,
    ):
        prometheus.wait_for('up{job="llmtap"}')  # scraping before any traffic
        cache = llmtap.MemoryCache()
        first = run_workload(metrics, fake, cache, server=True)
        time.sleep(2.5)  # a few scrapes apart, so rate() sees the counters move
        second = run_workload(metrics, fake, cache, server=True)
        prometheus.wait_for("sum(llmtap_requests_total)", minimum=first + second)
        time.sleep(1.5)  # one more scrape: every series has >= 2 samples after a change
        yield prometheus


def test_every_panel_query_returns_data_from_a_real_prometheus(
    live: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    dashboard = load()
    everything = {name: ".*" for name in VARIABLES}
    instance = live.label_values("instance", 'up{job="llmtap"}')[0]
    chosen = {  # what Grafana sends for a real selection (multi-value: a regex group)
        "job": "llmtap",
        "instance": re.escape(instance).replace("\\", "\\\\"),
        "provider": "(openai_compatible|openai)",
        "model": ".*",
    }
    failures: list[str] = []
    checked_panels: set[int] = set()
    checked_targets = 0
    for panel, target in targets(dashboard):
        for values in (everything, chosen):
            expr = substitute(target["expr"], LIVE_RATE_INTERVAL, values)
            problem = check_live(live, expr)
            if problem:
                failures.append(f"{panel['title']} [{target['refId']}]: {problem}\n  {expr}")
        checked_targets += 1
        checked_panels.add(panel["id"])
    with capsys.disabled():
        print(
            f"\nlive Prometheus: {len(checked_panels)} panels, {checked_targets} targets "
            f"checked, {len(failures)} failed"
        )
    assert failures == []
    assert len(checked_panels) == len(panels(dashboard))


def test_every_variable_query_returns_values_from_a_real_prometheus(
    live: PrometheusServer,
) -> None:
    found = {}
    for name in VARIABLES:
        query = variable_query(variables(load())[name])
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, query
        selector = substitute(match.group(1), LIVE_RATE_INTERVAL, {n: ".*" for n in VARIABLES})
        found[name] = live.label_values(match.group(2), selector)
    assert found["job"] == ["llmtap"]
    assert set(found["provider"]) == {"openai", "openai_compatible"}
    assert set(found["model"]) >= {*MODELS, "gpt-4.1"}
    assert found["instance"]


def test_the_live_check_fails_a_broken_or_renamed_query(live: PrometheusServer) -> None:
    good = 'sum(rate(llmtap_requests_total{job=~".*"}[1m]))'
    assert check_live(live, good) is None
    assert check_live(live, good.replace("requests_total", "request_total")) == "no series"
    problem = check_live(live, good[:-1])
    assert problem is not None and problem.startswith("bad_data")
    problem = check_live(live, good.replace("[1m]", "[$__rate_interval]"))
    assert problem is not None and problem.startswith("bad_data")
