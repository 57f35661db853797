"""Make the example self-contained: a stable base URL and a placeholder key.

The cache key includes the upstream's host and port, so recordings only replay
against the URL they were recorded with: the SDK is pointed at the stable
``http://llm.example.test/v1`` whatever ``OPENAI_BASE_URL`` says in your shell
(set ``EXAMPLE_BASE_URL`` to record against a real provider). ``record.py``
records against a local FakeUpstream reached through an HTTP proxy, so the URL
stays this stable one.
"""

import os

os.environ["OPENAI_BASE_URL"] = os.environ.get("EXAMPLE_BASE_URL", "http://llm.example.test/v1")
os.environ.setdefault("OPENAI_API_KEY", "sk-example-not-a-real-key")
