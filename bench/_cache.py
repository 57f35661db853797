"""2. Cache hit cost: llmtap Memory/Disk/FileCache hits vs the plain call, hishel 1.4, vcrpy."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

from bench._fixtures import LIBS, Canned, Telemetry, chat_body, lib, tap
from bench._floor import FloorTransport, SpanWork
from bench._harness import Plan, compare
from bench._report import Report, ratio_row

VS_VCR = 0.57
VS_HISHEL = 0.87
OFF_VS_PLAIN = 1.15
FILE_VS_VCR_PER_TEST = 0.10
LOWER_OFF = "lower bound: diskcache hit (no llmtap)"
LOWER_ON = "lower bound: diskcache hit + span + metrics (no llmtap)"
LOWER_NOTE = (
    "FloorTransport: parse, canonical sha256 key, diskcache get, raw body; nothing else "
    "llmtap does; if this misses the target, no DiskCache-backed transport keyed on the "
    "canonical request can meet it here"
)


def _block(client: Any, check: Any = None) -> Any:
    body = chat_body()

    def run(n: int) -> None:
        for _ in range(n):
            r = client.post("/chat/completions", json=body)
            r.read()
            if check is not None:
                check(r)

    return run


def _hit(r: Any) -> None:
    if r.headers.get("x-llmtap-cache") != "hit":
        raise AssertionError(f"expected a cache hit, got {r.headers.get('x-llmtap-cache')}")


def hishel_transport(name: str, inner: Any, db: Path) -> tuple[Any, str]:
    """hishel 1.x with a body-keyed FilterPolicy (POST caching); None and why if unavailable."""
    try:
        from importlib.metadata import version

        import hishel

        v = version("hishel")
        if not v.startswith("1."):
            return None, f"hishel {v} installed; only 1.x caches POST by body (need hishel==1.4.*)"
        mod = importlib.import_module(f"hishel.{name}")
    except ImportError as exc:
        return None, f"hishel not installed ({exc})"
    storage = hishel.SyncSqliteStorage(database_path=str(db))
    policy = hishel.FilterPolicy()  # no filters: everything is cached, POST included
    policy.use_body_key = True  # a class attribute in 1.4, not a constructor field
    return mod.SyncCacheTransport(
        next_transport=inner, storage=storage, policy=policy
    ), f"hishel {v}"


def vcr_cassette(name: str, path: Path) -> tuple[Any, str]:
    """A function returning a fresh replay-only cassette context (recorded here once)."""
    try:
        from importlib.metadata import version

        import vcr
    except ImportError as exc:
        return None, f"vcrpy not installed ({exc})"
    mod = lib(name)
    recorder = vcr.VCR(match_on=["method", "uri", "body"], record_mode="all")
    client = mod.Client(transport=mod.MockTransport(Canned()), base_url="http://fake/v1")
    with recorder.use_cassette(str(path)):
        client.post("/chat/completions", json=chat_body()).read()
    player = vcr.VCR(match_on=["method", "uri", "body"], record_mode="none")
    return (
        lambda: player.use_cassette(str(path), allow_playback_repeats=True)
    ), f"vcrpy {version('vcrpy')}"


def cache_hits(rep: Report, plan: Plan, per_test_plan: Plan, tel: Telemetry) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="llmtap-bench-cache-"))
    for name in LIBS:
        _hits(rep, name, plan, per_test_plan, tel, tmp)


def _hits(
    rep: Report, name: str, plan: Plan, per_test_plan: Plan, tel: Telemetry, tmp: Path
) -> None:
    from llmtap import DiskCache, FileCache, MemoryCache

    mod = lib(name)
    canned = Canned()
    disk, files = DiskCache(tmp / f"disk-{name}"), FileCache(tmp / f"files-{name}")

    def client(transport: Any) -> Any:
        return mod.Client(transport=transport, base_url="http://fake/v1")

    def mock() -> Any:
        return mod.MockTransport(canned)

    blocks: dict[str, Any] = {"plain": _block(client(mock()))}
    telemetries = {"tel_off": tel.off, **({"tel_on": tel.on} if tel.on else {})}
    for t_name, kw in telemetries.items():
        for c_name, cache in (("memory", MemoryCache()), ("disk", disk), ("file", files)):
            c = client(tap(name, mock(), cache=cache, **kw))
            c.post("/chat/completions", json=chat_body()).read()  # store it
            blocks[f"{c_name}_hit_{t_name}"] = _block(c, _hit)
    _lower_bounds(blocks, name, tmp, mock, client, tel)
    hishel_t, hishel_note = hishel_transport(name, mock(), tmp / f"hishel-{name}.db")
    if hishel_t is not None:
        hishel_client = client(hishel_t)
        hishel_client.post("/chat/completions", json=chat_body()).read()  # store it
        blocks["hishel_hit"] = _block(hishel_client)
    cassette, vcr_note = vcr_cassette(name, tmp / f"cassette-{name}.yaml")
    if cassette is not None:
        vcr_client = mod.Client(transport=mod.MockTransport(Canned()), base_url="http://fake/v1")
        steady = _block(vcr_client)

        def vcr_block(n: int, steady: Any = steady, cassette: Any = cassette) -> None:
            with cassette():  # patching + YAML load once per block of n calls
                steady(n)

        blocks["vcrpy_replay"] = vcr_block
    before = canned.calls
    samples = compare(blocks, plan)
    upstream_calls = canned.calls - before
    expected = plan.calls * (plan.rounds + plan.warmup)  # the plain variant only
    if upstream_calls != expected:  # hishel or llmtap went upstream: not a hit benchmark
        raise AssertionError(f"{name}: upstream saw {upstream_calls} calls, expected {expected}")

    def row(variant: str, base: str, target: float | None, note: str = "") -> None:
        if variant not in samples or base not in samples:
            missing = variant if variant not in samples else base
            why = {"hishel_hit": hishel_note, "vcrpy_replay": vcr_note}.get(missing, tel.why_not)
            rep.na("cache-hit", name, variant + f" vs {base}", why)
            return
        rep.add(ratio_row("cache-hit", name, samples, variant, base, target, note))

    for c_name in ("memory", "disk", "file"):
        row(
            f"{c_name}_hit_tel_off",
            "plain",
            OFF_VS_PLAIN if c_name == "disk" else None,
            "plain = uncached call to MockTransport",
        )
        row(f"{c_name}_hit_tel_on", "plain", None)
    row(
        "disk_hit_tel_on",
        "vcrpy_replay",
        VS_VCR,
        f"{vcr_note}, cassette loaded once per {plan.calls} calls",
    )
    row(
        "disk_hit_tel_on",
        "hishel_hit",
        VS_HISHEL,
        f"{hishel_note}, SQLite, FilterPolicy(use_body_key)",
    )
    row(LOWER_OFF, "plain", OFF_VS_PLAIN, LOWER_NOTE)
    row(LOWER_ON, "vcrpy_replay", VS_VCR, LOWER_NOTE)
    row(LOWER_ON, "hishel_hit", VS_HISHEL, LOWER_NOTE)
    row("hishel_hit", "plain", None, hishel_note)
    row("vcrpy_replay", "plain", None, vcr_note)
    _per_test(rep, name, per_test_plan, tmp, canned, cassette, vcr_note)


def _lower_bounds(
    blocks: dict[str, Any], name: str, tmp: Path, mock: Any, client: Any, tel: Telemetry
) -> None:
    """Hits through :class:`FloorTransport` on a bare ``diskcache.Cache``, telemetry off and
    (with a hit span's attributes and metrics) on."""
    import diskcache

    from llmtap import MemoryCache

    store = diskcache.Cache(str(tmp / f"floor-{name}"))
    variants = {LOWER_OFF: None}
    if tel.on is not None:
        variants[LOWER_ON] = SpanWork.like_llmtap(name, mock(), tel.provider, cache=MemoryCache())
    for variant, work in variants.items():
        c = client(FloorTransport(name, mock(), store=store, work=work))
        c.post("/chat/completions", json=chat_body()).read()  # store it
        blocks[variant] = _block(c)


def _per_test(
    rep: Report, name: str, plan: Plan, tmp: Path, canned: Canned, cassette: Any, vcr_note: str
) -> None:
    """One test = a new client and transport on the recordings, one call: FileCache vs vcrpy."""
    from opentelemetry.trace import NoOpTracerProvider

    from llmtap import FileCache

    mod = lib(name)
    directory = tmp / f"files-{name}"
    body = chat_body()

    def file_test(n: int) -> None:
        for _ in range(n):
            t = tap(
                name,
                mod.MockTransport(canned),
                cache=FileCache(directory),
                mode="replay",
                tracer_provider=NoOpTracerProvider(),
                metrics=None,
            )
            with mod.Client(transport=t, base_url="http://fake/v1") as c:
                _hit(c.post("/chat/completions", json=body))

    def vcr_test(n: int) -> None:
        for _ in range(n):
            client = mod.Client(transport=mod.MockTransport(canned), base_url="http://fake/v1")
            with client as c, cassette():
                c.post("/chat/completions", json=body).read()

    def plain_test(n: int) -> None:  # the floor: the same test with neither tool
        for _ in range(n):
            client = mod.Client(transport=mod.MockTransport(canned), base_url="http://fake/v1")
            with client as c:
                c.post("/chat/completions", json=body).read()

    if cassette is None:
        rep.na("per-test", name, "file_hit vs vcrpy", vcr_note)
        return
    floor = "lower bound: plain_test (no cache at all)"
    tests = {"filecache_test": file_test, "vcrpy_test": vcr_test, floor: plain_test}
    samples = compare(tests, plan)
    note = f"new client + transport, load recording, 1 replayed call; {vcr_note} YAML"
    rep.add(
        ratio_row(
            "per-test", name, samples, "filecache_test", "vcrpy_test", FILE_VS_VCR_PER_TEST, note
        )
    )
    note = (
        "new client, 1 uncached call to MockTransport: the best any cache can do; if this "
        "misses the target, no cache can meet it here"
    )
    rep.add(ratio_row("per-test", name, samples, floor, "vcrpy_test", FILE_VS_VCR_PER_TEST, note))
