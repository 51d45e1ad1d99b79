"""The HTTP face: the OpenAI routes, the Files and Batches routes and the page, served by aiohttp.

One module a concept: a route family each (`chat`, `models`, `metrics`, `batches`; the page's
routes live in ``cord_proxy.ui``), the middlewares (`request_id`, `access_log`, `errors`,
`auth`), what a route reads (`body`, `parsing`, `admission`), a chat completion's stream
(`chat_events`, the transport-free events; `chat_stream` and `sse`, their writer), what a
finished decode leaves (`outcome`), the connection layer (`connections`), the app factory
(`app`) and the process lifecycle (`lifecycle`). The engine knows none of it.
"""
