"""Private building blocks of :class:`llmtap.testing.FakeUpstream`.

``answers`` turns a request into a status, headers and body chunks (one module
per API, built on ``context`` and ``reply``); ``encoding`` compresses those
chunks; ``streams`` and ``server`` deliver them through an httpx/httpx2
``MockTransport`` or a real HTTP/1.1 socket.
"""
