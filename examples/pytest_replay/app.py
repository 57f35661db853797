"""A tiny app under test: it builds its own openai client, as real code does."""

from __future__ import annotations

import openai


def summarize(text: str) -> str:
    """One chat call; the client reads OPENAI_BASE_URL and OPENAI_API_KEY."""
    with openai.OpenAI(max_retries=0) as client:
        answer = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Summarize: {text}"}],
        )
    return answer.choices[0].message.content or ""


async def stream_words(topic: str) -> list[str]:
    """A streamed chat call through the async client."""
    async with openai.AsyncOpenAI(max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Words about {topic}"}],
            stream=True,
        )
        return [
            c.choices[0].delta.content
            async for c in stream
            if c.choices and c.choices[0].delta.content
        ]
