"""The OpenAI Responses API (``/v1/responses``): its request, its conversion to a chat decode,
the Response object out, and the stored responses."""
