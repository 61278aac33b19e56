"""Call capture and AST instrumentation (see docs/instrument.md)."""
