"""The pytest plugin (entry point ``llmtap``): record LLM calls once, replay them forever.

API.md "pytest plugin". Hooks and fixtures only; the state lives in
``llmtap._recordings`` and the client patching in ``llmtap._patching``.

- ``--llmtap-mode`` (ini ``llmtap_mode``, default ``replay``: a test run never
  reaches the network unless asked to). The plugin always passes its mode to
  the transports, so an exported ``LLMTAP_MODE`` does not change a test run.
- ``--llmtap-dir`` (ini ``llmtap_dir``, default ``tests/llmtap_recordings``): a
  command-line path is relative to the current directory, an ini path to the
  ini file's directory, the default to the rootdir (pytest's own conventions).
- ``--llmtap-report-unused`` / ``--llmtap-prune-unused``: only after a run that
  used every test it selected — nothing deselected (``-k``, ``-m``, ``--lf``),
  no node id (``::``) on the command line, nothing failed, errored or skipped,
  not stopped early (``-x``). Otherwise a recording would look unused only
  because its test did not run, and pruning it would lose it. Which *files*
  the run covers is up to you: run it over the whole suite.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtap._core.policy import MODES
from llmtap._patching import ClientPatch
from llmtap._recordings import RecordingSession

DEFAULT_DIR = "tests/llmtap_recordings"
DEFAULT_MODE = "replay"
_SESSION = pytest.StashKey[RecordingSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmtap", "record and replay LLM calls (llmtap)")
    group.addoption(
        "--llmtap-mode",
        choices=MODES,
        default=None,
        help=f"cache mode for LLM calls in tests (default: ini llmtap_mode, else {DEFAULT_MODE})",
    )
    group.addoption(
        "--llmtap-dir",
        default=None,
        help=f"recordings directory (default: ini llmtap_dir, else <rootdir>/{DEFAULT_DIR})",
    )
    group.addoption(
        "--llmtap-report-unused",
        action="store_true",
        help="after a run of every test, list recordings no test asked for",
    )
    group.addoption(
        "--llmtap-prune-unused",
        action="store_true",
        help="after a run of every test, delete recordings no test asked for",
    )
    parser.addini("llmtap_mode", f"llmtap cache mode in tests (default {DEFAULT_MODE})")
    parser.addini("llmtap_dir", f"llmtap recordings directory (default {DEFAULT_DIR})")


def _resolve(config: pytest.Config) -> tuple[Path, str]:
    mode = config.getoption("llmtap_mode") or str(config.getini("llmtap_mode") or DEFAULT_MODE)
    if mode not in MODES:
        raise pytest.UsageError(
            f"llmtap_mode = {mode!r} is not a llmtap mode; allowed: {', '.join(MODES)}"
        )
    option = config.getoption("llmtap_dir")
    ini = str(config.getini("llmtap_dir") or "")
    if option:
        directory = Path(config.invocation_params.dir, option)
    elif ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        directory = base / ini
    else:
        directory = config.rootpath / DEFAULT_DIR
    return directory, mode


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llmtap: route every httpx/httpx2 client created during this test through llmtap, "
        "on the recording store",
    )
    directory, mode = _resolve(config)
    config.stash[_SESSION] = RecordingSession(directory, mode)
    hooks = _XdistRunHooks if config.pluginmanager.hasplugin("xdist") else _RunHooks
    config.pluginmanager.register(hooks(config), "llmtap-run")


def _session(config: pytest.Config) -> RecordingSession:
    return config.stash[_SESSION]


# -- fixtures -------------------------------------------------------------------------


def _transport(request: pytest.FixtureRequest, library: str, is_async: bool) -> Any:
    try:
        return _session(request.config).transport(library, is_async)
    except ModuleNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def llmtap_transport(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An ``llmtap.httpx2.Transport`` on the recording store (``cache_when="always"``)."""
    transport = _transport(request, "httpx2", False)
    yield transport
    transport.close()


@pytest.fixture
def llmtap_async_transport(request: pytest.FixtureRequest) -> Any:
    """An ``llmtap.httpx2.AsyncTransport`` on the recording store; the client closes it."""
    return _transport(request, "httpx2", True)


@pytest.fixture
def llmtap_httpx_transport(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An ``llmtap.httpx.Transport`` on the recording store (``cache_when="always"``)."""
    transport = _transport(request, "httpx", False)
    yield transport
    transport.close()


@pytest.fixture
def llmtap_httpx_async_transport(request: pytest.FixtureRequest) -> Any:
    """An ``llmtap.httpx.AsyncTransport`` on the recording store; the client closes it."""
    return _transport(request, "httpx", True)


@pytest.fixture
def llmtap_patch(request: pytest.FixtureRequest) -> Iterator[RecordingSession]:
    """Every httpx/httpx2 client created during the test goes through llmtap."""
    patch = ClientPatch(_session(request.config))
    patch.start()
    try:
        yield patch.session
    finally:
        patch.stop()


@pytest.fixture(autouse=True)
def _llmtap_marker(request: pytest.FixtureRequest) -> None:
    """``@pytest.mark.llmtap`` means ``llmtap_patch``, set up before the test's fixtures."""
    if request.node.get_closest_marker("llmtap") is not None:
        request.getfixturevalue("llmtap_patch")


# -- a replay miss fails the test -------------------------------------------------------


def _fail_on_misses(item: pytest.Item) -> Generator[None, object, object]:
    session = _session(item.config)
    session.take_misses()  # misses from an earlier phase were already reported
    try:
        return (yield)
    finally:
        misses = session.take_misses()
        if misses:
            pytest.fail(session.miss_report(misses, _test_id(item)), pytrace=False)


def _test_id(item: pytest.Item) -> str:
    """The test's id relative to the directory pytest ran in (a node id is relative to
    the rootdir), so the recording command works where it is pasted."""
    path, _, rest = item.nodeid.partition("::")
    config = item.config
    try:
        path = os.path.relpath(config.rootpath / path, config.invocation_params.dir)
    except ValueError:  # another drive (Windows)
        return item.nodeid
    return f"{path}::{rest}" if rest else path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _fail_on_misses(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _fail_on_misses(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _fail_on_misses(item))


# -- unused recordings ----------------------------------------------------------------


class _RunHooks:
    """Why this run may not have used every test, and the keys its workers asked for.

    A plugin object per config (not module globals): report hooks carry no config.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: pytest.Session | None = None
        self.deselected = 0
        self.failed = 0
        self.skipped = 0
        self.used: set[str] = set()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.failed += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed += 1
        elif report.skipped and report.when in ("setup", "call"):
            self.skipped += 1

    def pytest_sessionfinish(self) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller reports
            workeroutput["llmtap_used"] = sorted(_session(self.config).store.used)
            workeroutput["llmtap_deselected"] = self.deselected

    def not_every_test(self) -> str | None:
        reasons = []
        if self.deselected:
            reasons.append(f"{self.deselected} deselected")
        if self.failed:
            reasons.append(f"{self.failed} failed or errored")
        if self.skipped:
            reasons.append(f"{self.skipped} skipped")
        if any("::" in arg for arg in self.config.args):
            reasons.append("node ids given on the command line")
        session = self.session
        if session is not None and (session.shouldstop or session.shouldfail):
            reasons.append("the run stopped early")
        return ", ".join(reasons) or None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        config = self.config
        prune = config.getoption("llmtap_prune_unused")
        if not (prune or config.getoption("llmtap_report_unused")):
            return
        if hasattr(config, "workerinput"):
            return
        state = _session(config)
        write = terminalreporter.write_line
        terminalreporter.section("llmtap recordings")
        reason = "mode 'off' reads no recording" if state.mode == "off" else self.not_every_test()
        if reason:
            write(f"llmtap: not reporting unused recordings: not every test ran ({reason})")
            return
        unused = state.unused(state.store.used | self.used)
        if not unused:
            write(f"llmtap: every recording in {state.directory} was used")
            return
        verb = "deleted" if prune else "unused"
        write(
            f"llmtap: {len(unused)} recording(s) no test asked for in {state.directory} ({verb}):"
        )
        for key in unused:
            write(f"  {key}.json")
            if prune:
                state.store.delete(key)


class _XdistRunHooks(_RunHooks):
    """With pytest-xdist: merge what each worker used and deselected, on the controller."""

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        self.used.update(output.get("llmtap_used", []))
        self.deselected = max(self.deselected, int(output.get("llmtap_deselected", 0)))
