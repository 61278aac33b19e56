"""``ascope.install(app)``: the one-line way to capture an ASGI application.

    app = FastAPI()
    ascope.install(app)                  # Starlette / FastAPI: middleware added in place

    app = ascope.install(asgi_app)       # any other ASGI callable: returns the wrapped app

Options are those of ``ascope.integrations.asgi.AscopeMiddleware`` (``enable``,
``integrations``, ``endpoints``, ``headers``, ``sensitive_headers``, ``websockets``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._exceptions import ConfigurationError


def install(app: Any, **options: Any) -> Any:
    """Capture every request and websocket of ``app``; returns the app to serve.

    A Starlette (or FastAPI) application gets ``AscopeMiddleware`` added as its outermost
    user middleware and is returned itself; installing twice is harmless. Any other ASGI
    callable is returned wrapped: serve the returned object.
    """
    # Imported by name: the integrations live outside the ascope/ folder (mapped by the
    # packaging), and importing them here keeps `import ascope` free of ASGI code.
    middleware = importlib.import_module("ascope.integrations.asgi").AscopeMiddleware

    if not callable(app):
        raise ConfigurationError("app", f"expected an ASGI application, got {app!r}")
    if isinstance(app, middleware):
        return app
    add_middleware = getattr(app, "add_middleware", None)
    user_middleware = getattr(app, "user_middleware", None)
    if callable(add_middleware) and isinstance(user_middleware, list):
        if not any(getattr(entry, "cls", None) is middleware
                   for entry in user_middleware):
            add_middleware(middleware, **options)
        return app
    return middleware(app, **options)
