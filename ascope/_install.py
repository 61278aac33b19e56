"""``ascope.install(app)``: the one-line way to capture an ASGI application.

    app = FastAPI()
    ascope.install(app)                  # Starlette / FastAPI: middleware added in place

    app = ascope.install(asgi_app)       # any other ASGI callable: returns the wrapped app

Options are those of ``ascope.integrations.asgi.AscopeMiddleware`` (``enable``,
``integrations``, ``endpoints``, ``headers``, ``sensitive_headers``, ``websockets``).
"""

from __future__ import annotations

from typing import Any

from ._exceptions import ConfigurationError


def install(app: Any, **options: Any) -> Any:
    """Capture every request and websocket of ``app``; returns the app to serve.

    A Starlette (or FastAPI) application gets ``AscopeMiddleware`` added as its outermost
    user middleware and is returned itself; installing twice is harmless. Any other ASGI
    callable is returned wrapped: serve the returned object.
    """
    from ascope.integrations.asgi import AscopeMiddleware  # noqa: PLC0415 - optional layer

    if not callable(app):
        raise ConfigurationError("app", f"expected an ASGI application, got {app!r}")
    if isinstance(app, AscopeMiddleware):
        return app
    add_middleware = getattr(app, "add_middleware", None)
    user_middleware = getattr(app, "user_middleware", None)
    if callable(add_middleware) and isinstance(user_middleware, list):
        if not any(getattr(entry, "cls", None) is AscopeMiddleware
                   for entry in user_middleware):
            add_middleware(AscopeMiddleware, **options)
        return app
    return AscopeMiddleware(app, **options)
