"""Integrations with web frameworks, database drivers and HTTP clients.

Installed as ``ascope.integrations`` (the folder is mapped in pyproject.toml).
"""
