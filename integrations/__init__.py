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
when it is enabled, so ``import ascope`` never imports a database driver. ``enable()``
without names imports none either: an integration whose library the program has not
imported yet is installed when it does (a post-import hook, ``wrapt``), so a service
that never uses SQLAlchemy, asyncpg or httpx does not load them (~0.3 s and ~40k
objects for the three here, every one of which a full garbage collection walks).
Named, an integration is installed at once, and an error in doing so is raised.
Capture itself is a separate switch: an enabled integration reports nothing while
capture is off (``ascope.enable()``, ``ascope.testing.capture()``).

The ASGI middleware lives in ``ascope.integrations.asgi`` and enables these when it is
installed. ``docs/databases.md`` says what each one records.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import sys
import threading
from types import ModuleType

import wrapt

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

# Held to change what is on, never while importing: a post-import hook (_imported) runs
# inside the program's import, holding that module's import lock, and takes this one.
_lock = threading.Lock()
_enabled: dict[str, ModuleType] = {}
_waiting: set[str] = set()  # enabled, to be installed when the program imports the library
_hooked: set[str] = set()  # a post-import hook registered and not yet run


def known() -> tuple[str, ...]:
    """Names of every library integration, installed or not."""
    return tuple(sorted(_KNOWN))


def available() -> tuple[str, ...]:
    """Names of the integrations whose library is installed."""
    return tuple(name for name in known() if _library_installed(_KNOWN[name][1]))


def enabled() -> frozenset[str]:
    """Names of the integrations that are on (installed, or waiting for the program to
    import their library)."""
    return frozenset(_enabled) | frozenset(_waiting)


def enable(*names: str) -> frozenset[str]:
    """Switch integrations on (all available ones without names); returns those on.

    Raises ``ascope.ConfigurationError`` for a name ascope does not know or whose library
    is not installed (nothing is enabled then), or one that fails to install. Without
    names, an integration that fails to install is logged and skipped, and one whose
    library the program has not imported yet is installed when it does.
    """
    explicit = bool(names)
    chosen = _check(names) if explicit else available()
    for name in chosen:
        if not _library_installed(_KNOWN[name][1]):
            raise ConfigurationError(
                "integrations", f"{name!r} needs the {_KNOWN[name][1]!r} library, which is "
                                "not installed")
    for name in chosen:
        if name in _enabled:
            continue
        if explicit or _KNOWN[name][1] in sys.modules:
            module = _load(name, explicit)
            if module is not None:
                _activate(name, module, explicit)
            continue
        with _lock:
            if name in _enabled or name in _waiting:
                continue
            _waiting.add(name)
            hook = name not in _hooked  # one hook per library, however often enabled
            _hooked.add(name)
        if hook:
            # Outside the lock: wrapt runs the hook at once if the library reached
            # sys.modules since it was looked for (another thread importing it), and the
            # hook takes the lock.
            wrapt.register_post_import_hook(functools.partial(_imported, name),
                                            _KNOWN[name][1])
    return enabled()


def disable(*names: str) -> frozenset[str]:
    """Switch integrations off (all without names), undoing what ``enable`` did.

    Returns the names still on. Unknown names raise ``ascope.ConfigurationError``.
    """
    chosen = _check(names) if names else tuple(enabled())
    with _lock:
        for name in chosen:
            _waiting.discard(name)  # its hook, if the library comes later, does nothing
            module = _enabled.pop(name, None)
            if module is not None:
                module.uninstall()
        return enabled()


def _load(name: str, explicit: bool) -> ModuleType | None:
    """The integration's module, imported without our lock held: its library first, so a
    thread that finds another importing it waits for that import (and its hook) to end."""
    try:
        importlib.import_module(_KNOWN[name][1])
        return importlib.import_module(f"{__name__}.{_KNOWN[name][0]}")
    except Exception as error:
        _failed(name, explicit, error)
        return None


def _activate(name: str, module: ModuleType, explicit: bool,
              if_waiting: bool = False) -> None:
    """Install a loaded integration once (under the lock, which ``disable`` takes too);
    ``if_waiting``: only if it is still waiting (not disabled since)."""
    with _lock:
        if name in _enabled or (if_waiting and name not in _waiting):
            return
        _waiting.discard(name)  # installed now, or not on at all
        try:
            module.install()
        except Exception as error:
            _failed(name, explicit, error)
            return
        _enabled[name] = module


def _failed(name: str, explicit: bool, error: Exception) -> None:
    # A library version whose internals moved: asked for by name, say so; swept up by
    # enable() (or installed on import), leave the program running without that one.
    if explicit:
        raise ConfigurationError(
            "integrations", f"{name!r} could not be enabled: {error!r}") from error
    logger.warning("ascope: integration %r could not be enabled: %r", name, error)


def _imported(name: str, library: ModuleType) -> None:
    """The post-import hook: the program has imported ``name``'s library. It runs inside
    that import; nothing here raises into it."""
    try:
        _hooked.discard(name)
        if name not in _waiting:  # disabled since, or installed by a named enable()
            return
        module = _load(name, explicit=False)
        if module is not None:
            _activate(name, module, explicit=False, if_waiting=True)
    except Exception:
        logger.exception("ascope: integration %r could not be enabled", name)


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
