"""The public surface: ``ascope.__all__`` and ``ascope.runtime.__all__`` are locked here.

Adding or removing a public name is an API change: update the lists below on purpose.
"""

from __future__ import annotations

import types

import ascope
from ascope import runtime

ASCOPE_ALL = [
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

RUNTIME_ALL = [
    "NodeId",
    "clear_context",
    "current_correlation_id",
    "enabled",
    "get_ast_correlation_metadata",
    "initialize_context",
    "measure_overhead",
    "report_action_complete",
    "report_action_error",
    "report_action_parameters",
    "report_action_start",
    "report_action_success",
    "report_ast_branch_execution",
    "report_ast_correlation_performance",
    "report_ast_expression_value",
    "report_ast_function_entry",
    "report_ast_function_exit",
    "report_ast_line_execution",
    "report_ast_loop_iteration",
    "report_ast_pattern_match",
    "report_ast_variable_snapshot",
    "report_channel_join_complete",
    "report_channel_join_start",
    "report_channel_message_complete",
    "report_channel_message_start",
    "report_endpoint_entry",
    "report_endpoint_exit",
    "report_error",
    "report_event",
    "report_expression_value",
    "report_function_entry",
    "report_function_exit",
    "report_http_request_complete",
    "report_http_request_start",
    "report_line_execution",
    "report_live_assigns",
    "report_live_callback",
    "report_live_callback_error",
    "report_live_callback_success",
    "report_live_event",
    "report_live_event_complete",
    "report_live_event_start",
    "report_live_mount_complete",
    "report_live_mount_start",
    "report_message_send",
    "report_node_event",
    "report_partition_detected",
    "report_query_complete",
    "report_query_start",
    "report_service_callback_complete",
    "report_service_callback_error",
    "report_service_callback_start",
    "report_service_callback_success",
    "report_state_change",
    "report_task_exit",
    "report_task_spawn",
    "report_variable_snapshot",
    "validate_ast_node_id",
]


def test_ascope_all_is_locked_and_sorted() -> None:
    """ascope.__all__ is exactly the agreed list, sorted, without duplicates."""
    assert ascope.__all__ == ASCOPE_ALL
    assert ascope.__all__ == sorted(set(ascope.__all__))


def test_every_ascope_name_is_importable() -> None:
    """Each name in ascope.__all__ exists, and `from ascope import *` gives exactly those."""
    for name in ascope.__all__:
        assert getattr(ascope, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from ascope import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == ASCOPE_ALL


def test_public_attributes_of_ascope_are_all_exported() -> None:
    """Every public, non-module attribute of the package is in __all__ (no accidental
    public names); exported classes and functions come from ascope's own modules."""
    public = {name for name, value in vars(ascope).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)
              and name != "annotations"}  # `from __future__ import annotations`
    assert public <= set(ascope.__all__)
    for name in ascope.__all__:
        value = getattr(ascope, name)
        if not isinstance(value, types.ModuleType):
            assert getattr(value, "__module__", "ascope").startswith("ascope"), name


def test_runtime_all_is_locked_sorted_and_importable() -> None:
    """ascope.runtime.__all__ is exactly the agreed list, sorted, and every name exists
    and is callable."""
    assert runtime.__all__ == RUNTIME_ALL
    assert runtime.__all__ == sorted(set(runtime.__all__))
    for name in runtime.__all__:
        assert callable(getattr(runtime, name)), name


def test_context_functions_are_the_same_objects_in_both_places() -> None:
    """ascope.enabled is ascope.runtime.enabled, and so on: one implementation."""
    for name in ("clear_context", "current_correlation_id", "enabled", "initialize_context"):
        assert getattr(ascope, name) is getattr(runtime, name)


def test_exceptions_hierarchy() -> None:
    """AscopeError is the base; InvalidNodeId is also a ValueError."""
    assert issubclass(ascope.ConfigurationError, ascope.AscopeError)
    assert issubclass(ascope.InvalidNodeId, ascope.AscopeError)
    assert issubclass(ascope.InvalidNodeId, ValueError)
    assert issubclass(ascope.AscopeError, Exception)
