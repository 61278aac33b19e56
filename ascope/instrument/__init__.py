"""Call capture, AST instrumentation, the import hook and stateful services.

See docs/instrument.md (call capture, import hook, services) and docs/ast.md (``ast=True``).
"""

from __future__ import annotations

from ._decorator import InstrumentOptions as InstrumentOptions
from ._decorator import SourceUnavailableWarning as SourceUnavailableWarning
from ._decorator import instrument as instrument
from ._hook import AlreadyImportedWarning as AlreadyImportedWarning
from ._hook import InstrumentedPackages as InstrumentedPackages
from ._hook import instrument_packages as instrument_packages
from ._hook import uninstall_import_hook as uninstall_import_hook

__all__ = [
    "AlreadyImportedWarning",
    "InstrumentOptions",
    "InstrumentedPackages",
    "SourceUnavailableWarning",
    "instrument",
    "instrument_packages",
    "uninstall_import_hook",
]
