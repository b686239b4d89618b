"""The server's perimeter, before any route runs: requests for a foreign Host or from a foreign
page are refused, bodies over the limit are refused, and every response carries the security
headers."""

from moss.server.access import Exposure
from moss.server.errors import ApiError, send_error

MAX_BODY = 4 << 20  # bytes; a full 32k-token history is well under this
# The page loads only its own files and talks only to its own server; no inline script runs, so
# a model's answer that slips markup past the sanitizer still cannot run code or send data out.
# Styles may be inline: KaTeX positions math with style attributes.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                                 b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class Perimeter:
    """Refuse requests for a foreign Host or from a foreign page (403, before any work is done),
    and add the security headers to every response."""

    def __init__(self, app, exposure: Exposure):
        self.app, self.exposure = app, exposure

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.exposure.refusal(scope["method"], headers)
        if refusal is not None:
            return await send_error(send, ApiError(403, refusal, "invalid_request_error", "forbidden"))

        async def secured(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)
        await self.app(scope, receive, secured)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.limit:
                return await too_large(send, self.limit)
            return await self.app(scope, receive, send)
        # No length given (chunked): read up to the limit first, then replay it to the app.
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                return await too_large(send, self.limit)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def too_large(send, limit: int) -> None:
    await send_error(send, ApiError(413, f"request body over {limit} bytes", code="request_too_large"))
