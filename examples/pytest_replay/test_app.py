"""The app's tests: replayed from ./recordings, no network, no API key needed."""

import app
import httpx2
import pytest


@pytest.mark.llmtap
def test_summarize() -> None:
    assert app.summarize("llmtap records LLM calls once and replays them.")


@pytest.mark.llmtap
async def test_stream_words() -> None:
    assert len(await app.stream_words("caching")) > 3


def test_with_the_patch_fixture(llmtap_patch) -> None:
    # llmtap_patch is the marker as a fixture: any client built here goes through llmtap.
    with httpx2.Client(base_url="http://llm.example.test/v1") as c:
        r = c.post("/embeddings", json={"model": "text-embedding-3-small", "input": "hi"})
    assert r.status_code == 200
    assert len(r.json()["data"][0]["embedding"]) > 0
