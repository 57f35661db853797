"""The pytest plugin, through pytester: record in one run, replay in another with no upstream."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.testing import FakeUpstream

pytest_plugins = ["pytester"]

SECRET = "sk-test-SECRET-abc123"
INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider
filterwarnings = error
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

SUITE = """
import os
import httpx
import httpx2
import openai
import pytest

URL = os.environ["FAKE_URL"]
KEY = "%(secret)s"
HI = [{"role": "user", "content": "hello"}]


@pytest.mark.llmtap
def test_openai_sync():
    with openai.OpenAI(api_key=KEY, base_url=URL, max_retries=0) as client:
        answer = client.chat.completions.create(model="m", messages=HI, seed=1)
    assert answer.choices[0].message.content


@pytest.mark.llmtap
def test_openai_sync_stream():
    with openai.OpenAI(api_key=KEY, base_url=URL, max_retries=0) as client:
        stream = client.chat.completions.create(model="m", messages=HI, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text


@pytest.mark.llmtap
async def test_openai_async_stream():
    async with openai.AsyncOpenAI(api_key=KEY, base_url=URL, max_retries=0) as client:
        stream = await client.chat.completions.create(model="m", messages=HI, stream=True, n=2)
        chunks = [c async for c in stream]
    assert len(chunks) > 2


def test_httpx2_fixture(llmtap_transport):
    with httpx2.Client(transport=llmtap_transport, headers={"authorization": "Bearer " + KEY}) as c:
        r = c.post(URL + "/embeddings", json={"model": "e", "input": "x"})
    assert r.status_code == 200, r.text


async def test_httpx2_async_fixture(llmtap_async_transport):
    async with httpx2.AsyncClient(transport=llmtap_async_transport) as c:
        body = {"model": "m", "messages": HI, "stream": True, "seed": 5}
        r = await c.post(URL + "/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert b"[DONE]" in await r.aread()


def test_httpx_fixture(llmtap_httpx_transport):
    with httpx.Client(transport=llmtap_httpx_transport) as c:
        r = c.post(URL + "/chat/completions", json={"model": "m", "messages": HI, "seed": 3})
    assert r.status_code == 200, r.text


async def test_httpx_async_fixture(llmtap_httpx_async_transport):
    async with httpx.AsyncClient(transport=llmtap_httpx_async_transport) as c:
        r = await c.post(URL + "/responses", json={"model": "m", "input": "hi", "stream": True})
        assert r.status_code == 200, r.text
        await r.aread()


@pytest.mark.llmtap
def test_plain_httpx_client_is_patched():
    with httpx.Client() as c:
        r = c.post(URL + "/chat/completions", json={"model": "m", "messages": HI, "seed": 9})
    assert r.headers["x-llmtap-cache"] in ("hit", "miss")
""".replace("%(secret)s", SECRET)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".ini", pytest=INI)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        monkeypatch.setenv("FAKE_URL", upstream.base_url)
        yield upstream


def recordings(pytester: pytest.Pytester) -> Path:
    return pytester.path / "tests" / "llmtap_recordings"


def test_record_then_replay_offline(suite: pytest.Pytester, fake: FakeUpstream) -> None:
    result = suite.runpytest_subprocess("--llmtap-mode=read_write")
    result.assert_outcomes(passed=8)
    sent = fake.request_count
    assert sent == 8
    files = sorted(recordings(suite).glob("*.json"))
    assert len(files) == 8
    before = {f.name: f.read_bytes() for f in files}
    # Re-recording unchanged answers (new timestamps, new x-request-id) changes no byte.
    suite.runpytest_subprocess("--llmtap-mode=record").assert_outcomes(passed=8)
    assert fake.request_count == 16
    assert {f.name: f.read_bytes() for f in recordings(suite).glob("*.json")} == before
    fake.stop()  # replay must not need the upstream
    result = suite.runpytest_subprocess("--llmtap-report-unused")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*every recording in*was used*"])
    assert {f.name: f.read_bytes() for f in recordings(suite).glob("*.json")} == before


def test_recordings_hold_no_secret(suite: pytest.Pytester, fake: FakeUpstream) -> None:
    suite.runpytest_subprocess("--llmtap-mode=read_write").assert_outcomes(passed=8)
    for path in recordings(suite).iterdir():
        data = path.read_bytes().lower()
        for needle in (
            SECRET.lower(),
            b"secret",
            b"authorization",
            b"bearer",
            b"cookie",
            b"org-fake",
            b"proj_fake",
        ):
            needle = needle.encode() if isinstance(needle, str) else needle
            assert needle not in data, (path, needle)


def test_replay_miss_fails_with_a_clear_message(suite: pytest.Pytester, fake: FakeUpstream) -> None:
    suite.runpytest_subprocess("--llmtap-mode=read_write").assert_outcomes(passed=8)
    suite.makepyfile(
        test_new="""
        import os, openai, pytest

        @pytest.mark.llmtap
        def test_swallowed():
            client = openai.OpenAI(api_key="k", base_url=os.environ["FAKE_URL"], max_retries=0)
            try:
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hellO"}], seed=1)
            except openai.NotFoundError:
                pass  # the code under test hides the error; the plugin must not
            finally:
                client.close()
        """
    )
    fake.stop()
    result = suite.runpytest_subprocess("test_new.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*llmtap: 1 LLM call(s) in this test had no recording (mode 'replay'*",
            "*chat call (model 'm', key *Nearest stored entry: *differing in: "
            "body.messages.0.content*",
            "*nearest recording: *llmtap_recordings*.json",
            "*pytest --llmtap-mode=read_write test_new.py::test_swallowed*",
        ]
    )
    # LLMTAP_MODE does not reach the plugin: the report gives only the command that records.
    assert "LLMTAP_MODE" not in result.stdout.str()


def test_the_record_command_works_pasted_where_pytest_ran(
    pytester: pytest.Pytester, fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a subdirectory (node ids are relative to the rootdir), for a test id a
    shell would split (a quote in a parameter): the printed command records that test."""
    pytester.makefile(".ini", pytest=INI)
    tests = pytester.mkdir("tests")
    (tests / "test_quote.py").write_text(
        "import os, openai, pytest\n"
        "@pytest.mark.llmtap\n"
        "@pytest.mark.parametrize('word', [\"it's\"])\n"
        "def test_q(word):\n"
        "    url = os.environ['FAKE_URL']\n"
        "    with openai.OpenAI(api_key='k', base_url=url, max_retries=0) as c:\n"
        "        c.chat.completions.create(model='m', seed=1,\n"
        "            messages=[{'role': 'user', 'content': word}])\n"
    )
    monkeypatch.chdir(tests)
    missed = pytester.runpytest_subprocess("test_quote.py")
    missed.assert_outcomes(failed=1)
    line = next(x for x in missed.outlines if "pytest --llmtap-mode=read_write" in x)
    command = shlex.split(line)
    assert command[-1] == "test_quote.py::test_q[it's]"
    pytester.runpytest_subprocess(*command[1:]).assert_outcomes(passed=1)
    pytester.runpytest_subprocess("test_quote.py").assert_outcomes(passed=1)  # replayed


def test_a_broken_recording_is_named_not_called_unrecorded(
    suite: pytest.Pytester, fake: FakeUpstream
) -> None:
    """A merge conflict in a recording: the failure names the file and why it is
    unreadable, instead of advising a re-record that would overwrite it."""
    suite.runpytest_subprocess("--llmtap-mode=read_write", "-k", "test_httpx_fixture")
    (path,) = recordings(suite).glob("*.json")
    path.write_text("<<<<<<< HEAD\n" + path.read_text() + "=======\n>>>>>>> branch\n")
    fake.stop()
    result = suite.runpytest_subprocess("-k", "test_httpx_fixture")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*the store failed to read it*{path.name}*"])
    assert "it was never recorded" not in result.stdout.str()


def test_xdist_records_concurrently(suite: pytest.Pytester, fake: FakeUpstream) -> None:
    suite.runpytest_subprocess("-n", "2", "--llmtap-mode=read_write").assert_outcomes(passed=8)
    from llmtap import FileCache

    cache = FileCache(recordings(suite))
    assert len(list(cache.iter_entries())) == 8  # every file parses and rebuilds an entry
    fake.stop()
    result = suite.runpytest_subprocess("-n", "2", "--llmtap-report-unused")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*every recording in*was used*"])


def test_unused_report_and_prune(suite: pytest.Pytester, fake: FakeUpstream) -> None:
    suite.runpytest_subprocess("--llmtap-mode=read_write").assert_outcomes(passed=8)
    # A recording whose test is gone: rename the stored key too, so it stays a valid recording.
    src = sorted(recordings(suite).glob("[0-9a-f]" * 8 + "*.json"))[0]
    text = src.read_text().replace(src.stem, "0" * 64)
    (recordings(suite) / ("0" * 64 + ".json")).write_text(text)
    fake.stop()

    partial = suite.runpytest_subprocess("-k", "sync", "--llmtap-prune-unused")
    partial.stdout.fnmatch_lines(["*not reporting unused recordings*deselected*"])
    assert (recordings(suite) / ("0" * 64 + ".json")).exists()

    report = suite.runpytest_subprocess("--llmtap-report-unused")
    report.assert_outcomes(passed=8)
    report.stdout.fnmatch_lines(["*1 recording(s) no test asked for*(unused)*", "*0000000000*"])
    assert (recordings(suite) / ("0" * 64 + ".json")).exists()

    prune = suite.runpytest_subprocess("--llmtap-prune-unused")
    prune.stdout.fnmatch_lines(["*1 recording(s) no test asked for*(deleted)*"])
    assert not (recordings(suite) / ("0" * 64 + ".json")).exists()
    assert len(list(recordings(suite).glob("*.json"))) == 8


def test_options_ini_and_marker_registration(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest=INI + "llmtap_mode = off\nllmtap_dir = recs\n")
    pytester.makepyfile(
        """
        import pytest

        def test_settings(llmtap_patch):
            assert llmtap_patch.mode == "off"
            assert llmtap_patch.directory.name == "recs"
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("--llmtap-mode=bogus")
    assert result.ret != 0
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.llmtap*"])


def test_patch_is_undone_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest=INI)
    pytester.makepyfile(
        """
        import asyncio, httpx, httpx2, pytest
        from llmtap._transport import TransportCore

        @pytest.mark.llmtap
        def test_patched():
            b = httpx2.AsyncClient()
            with httpx.Client() as a:
                assert isinstance(a._transport, TransportCore)
                assert isinstance(b._transport, TransportCore)
            asyncio.run(b.aclose())

        def test_not_patched():
            with httpx.Client() as a:
                assert not isinstance(a._transport, TransportCore)
        """
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=2)


EXAMPLE = Path(__file__).parent.parent / "examples" / "pytest_replay"


@pytest.mark.parametrize(
    ("cwd", "args"),
    [
        (EXAMPLE, []),
        (EXAMPLE.parent.parent, ["examples/pytest_replay"]),
        (
            EXAMPLE.parent.parent,
            [
                "examples/pytest_replay",
                "-p",
                "llmtap",
                "--llmtap-dir=examples/pytest_replay/recordings",
            ],
        ),
    ],
)
def test_example_replays_offline(pytester: pytest.Pytester, cwd: Path, args: list[str]) -> None:
    """The committed example recordings replay with no upstream, from either directory."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "pytest", "-q", "--llmtap-report-unused", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout and "was used" in done.stdout


LITELLM_SUITE = """
import os, litellm, pytest

def call(text):
    answer = litellm.completion(
        model="groq/llama-3.1-8b-instant", api_base=os.environ["FAKE_URL"], api_key="k",
        messages=[{"role": "user", "content": text}], max_retries=0,
    )
    return answer._hidden_params.get("additional_headers", {})

def test_1_unmarked_first():
    assert "llm_provider-x-llmtap-cache" not in call("builds litellm's client")

@pytest.mark.llmtap
def test_2_marked():
    assert "llm_provider-x-llmtap-cache" in call("recorded")

def test_3_unmarked_after():
    assert "llm_provider-x-llmtap-cache" not in call("never asked for llmtap")
"""


def test_litellm_clients_follow_the_marker(pytester: pytest.Pytester, fake: FakeUpstream) -> None:
    """litellm reuses the HTTP clients it built in earlier tests: a marked test must still
    be routed, and an unmarked one after it must not."""
    pytester.makefile(".ini", pytest=INI.replace("filterwarnings = error\n", ""))
    pytester.makepyfile(test_litellm=LITELLM_SUITE)
    pytester.runpytest_subprocess("--llmtap-mode=read_write").assert_outcomes(passed=3)
    assert len(list(recordings(pytester).glob("*.json"))) == 1
