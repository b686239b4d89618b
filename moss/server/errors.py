"""Errors as the OpenAI API gives them: one JSON shape for every failure, from a route, from
request validation, from the middleware, or from a crash (which never shows a trace)."""

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An error answered as OpenAI's error JSON."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


def found(fn):
    try:
        return fn()
    except LookupError as exc:
        raise ApiError(404, str(exc), code="not_found")


def error_body(exc: ApiError) -> dict:
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}


def install_handlers(app: FastAPI) -> None:
    """Every error leaves as OpenAI's error JSON; nothing a client sends becomes a 500."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse(error_body(exc), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body(ApiError(422, "the request body is not valid JSON")),
                                status_code=422)
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg", "invalid request"))
        return JSONResponse(error_body(ApiError(422, message, param=where)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(ApiError(exc.status_code, str(exc.detail), code=code)),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception):
        return JSONResponse(error_body(ApiError(500, f"internal error: {type(exc).__name__}",
                                                 "server_error")), status_code=500)


async def send_error(send, error: ApiError) -> None:
    """An error answered from ASGI middleware, before FastAPI's handlers are reached."""
    body = json.dumps(error_body(error)).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
