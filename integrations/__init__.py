"""Integrations with web frameworks, database drivers and HTTP clients.

Installed as ``ascope.integrations`` (the folder is mapped in pyproject.toml).

Library integrations are switched on by name, or all at once for the libraries that
are installed::

    ascope.integrations.enable("sqlalchemy", "asyncpg", "sqlite", "httpx")
    ascope.integrations.enable()        # every one whose library is importable
    ascope.integrations.disable("httpx")
    ascope.integrations.disable()       # all of them

Enabling twice is harmless; disabling puts back exactly what enabling changed (patched
methods restored, event listeners removed). An integration module is imported only
when it is enabled, so ``import ascope`` never imports a database driver. Capture
itself is a separate switch: an enabled integration reports nothing while capture is
off (``ascope.enable()``, ``ascope.testing.capture()``).

The ASGI middleware lives in ``ascope.integrations.asgi`` and enables these when it is
installed. ``docs/databases.md`` says what each one records.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from types import ModuleType

from ascope._exceptions import ConfigurationError

__all__ = ["available", "disable", "enable", "enabled", "known"]

# name -> (module under ascope.integrations, the library it needs)
_KNOWN: dict[str, tuple[str, str]] = {
    "asyncpg": ("asyncpg", "asyncpg"),
    "httpx": ("httpx", "httpx"),
    "sqlalchemy": ("sqlalchemy", "sqlalchemy"),
    "sqlite": ("sqlite", "sqlite3"),
}

logger = logging.getLogger("ascope")

_lock = threading.Lock()
_enabled: dict[str, ModuleType] = {}


def known() -> tuple[str, ...]:
    """Names of every library integration, installed or not."""
    return tuple(sorted(_KNOWN))


def available() -> tuple[str, ...]:
    """Names of the integrations whose library is installed."""
    return tuple(name for name in known() if _library_installed(_KNOWN[name][1]))


def enabled() -> frozenset[str]:
    """Names of the integrations that are on."""
    return frozenset(_enabled)


def enable(*names: str) -> frozenset[str]:
    """Switch integrations on (all available ones without names); returns those on.

    Raises ``ascope.ConfigurationError`` for a name ascope does not know or whose library
    is not installed (nothing is enabled then), or one that fails to install. Without
    names, an integration that fails to install is logged and skipped.
    """
    explicit = bool(names)
    chosen = _check(names) if explicit else available()
    for name in chosen:
        if not _library_installed(_KNOWN[name][1]):
            raise ConfigurationError(
                "integrations", f"{name!r} needs the {_KNOWN[name][1]!r} library, which is "
                                "not installed")
    with _lock:
        for name in chosen:
            if name not in _enabled:
                try:
                    module = importlib.import_module(f"{__name__}.{_KNOWN[name][0]}")
                    module.install()
                except Exception as error:
                    # A library version whose internals moved: asked for by name, say so;
                    # swept up by enable(), leave the app running without that one.
                    if explicit:
                        raise ConfigurationError(
                            "integrations", f"{name!r} could not be enabled: {error!r}"
                        ) from error
                    logger.warning("ascope: integration %r could not be enabled: %r",
                                   name, error)
                    continue
                _enabled[name] = module
        return frozenset(_enabled)


def disable(*names: str) -> frozenset[str]:
    """Switch integrations off (all without names), undoing what ``enable`` did.

    Returns the names still on. Unknown names raise ``ascope.ConfigurationError``.
    """
    chosen = _check(names) if names else tuple(_enabled)
    with _lock:
        for name in chosen:
            module = _enabled.pop(name, None)
            if module is not None:
                module.uninstall()
        return frozenset(_enabled)


def _check(names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if name not in _KNOWN:
            raise ConfigurationError(
                "integrations", f"unknown integration {name!r}; known: {', '.join(known())}")
    return tuple(dict.fromkeys(names))


def _library_installed(library: str) -> bool:
    try:
        return importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):
        return False
