"""ascope: async-first execution capture for asyncio services.

    import ascope
    ascope.configure(sinks=["sqlite:ascope.db"])
    ascope.enable()

See README.md and docs/ for the whole story; ``ascope.runtime`` holds the report API.
"""

from __future__ import annotations

from . import runtime as runtime
from . import store as store
from . import testing as testing
from ._config import configure as configure
from ._config import configure_from_environment as _configure_from_environment
from ._events import Event as Event
from ._events import Node as Node
from ._exceptions import AscopeError as AscopeError
from ._exceptions import ConfigurationError as ConfigurationError
from ._exceptions import InvalidNodeId as InvalidNodeId
from ._install import install as install
from ._pipeline import Stats as Stats
from ._pipeline import flush as flush
from ._pipeline import shutdown as shutdown
from ._pipeline import stats as stats
from ._ring import RingStats as RingStats
from ._switch import disable as disable
from ._switch import disabled as disabled
from ._switch import enable as enable
from ._tasks import install_task_factory as install_task_factory
from ._tasks import uninstall_task_factory as uninstall_task_factory
from .instrument import instrument as instrument
from .instrument import instrument_packages as instrument_packages
from .runtime import clear_context as clear_context
from .runtime import current_correlation_id as current_correlation_id
from .runtime import enabled as enabled
from .runtime import initialize_context as initialize_context

__version__ = "0.1.0"

__all__ = [
    "AscopeError",
    "ConfigurationError",
    "Event",
    "InvalidNodeId",
    "Node",
    "RingStats",
    "Stats",
    "clear_context",
    "configure",
    "current_correlation_id",
    "disable",
    "disabled",
    "enable",
    "enabled",
    "flush",
    "initialize_context",
    "install",
    "install_task_factory",
    "instrument",
    "instrument_packages",
    "runtime",
    "shutdown",
    "stats",
    "store",
    "testing",
    "uninstall_task_factory",
]

_configure_from_environment()
