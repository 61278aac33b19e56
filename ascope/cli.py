"""The ``ascope`` command.

    ascope demo [--db PATH]                 run the bundled demo service, captured into SQLite
    ascope show [PATH] [--trace ID] [--all] what a store holds: counts, then each trace as a tree
    ascope serve MODULE:APP [--db PATH]     serve your ASGI app with uvicorn, captured into SQLite
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ascope", description="Execution capture for asyncio "
                                     "services: run, capture, show.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the bundled demo service, captured into SQLite")
    demo.add_argument("--db", default="ascope-demo.db", help="store file (default %(default)s)")
    show_parser = commands.add_parser("show", help="print what a store holds")
    show_parser.add_argument("path", nargs="?", default="ascope.db")
    show_parser.add_argument("--trace", help="only this trace id")
    show_parser.add_argument("--all", action="store_true", help="every trace, not the first 5")
    serve = commands.add_parser("serve", help="serve an ASGI app with ascope installed")
    serve.add_argument("app", help="MODULE:ATTRIBUTE of the ASGI app")
    serve.add_argument("--db", default="ascope.db")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    options = parser.parse_args(argv)

    if options.command == "demo":
        from . import demo as demo_module

        return demo_module.run(options.db)
    if options.command == "show":
        return show(options.path, trace=options.trace, limit=None if options.all else 5)
    return _serve(options.app, options.db, options.host, options.port)


def show(path: str, trace: str | None = None, limit: int | None = 5) -> int:
    """Print a store's event counts and its traces as trees."""
    from ._query import build_tree
    from .store import open_store

    if not os.path.exists(path):
        print(f"ascope: no store at {path}", file=sys.stderr)
        return 1
    with open_store(path) as store:
        kinds = store.kinds()
        print(f"\n{path}: {sum(kinds.values())} events")
        for kind, count in kinds.items():
            print(f"  {kind:<28} {count:>8}")
        traces = [trace] if trace else store.traces()
        shown = traces if limit is None else traces[:limit]
        for trace_id in shown:
            print(f"\ntrace {trace_id}")
            tree = build_tree(store.events(trace_id=trace_id)).render(points=False)
            print("\n".join("  " + line for line in tree.splitlines()))
        if len(shown) < len(traces):
            print(f"\n({len(traces) - len(shown)} more traces; --all shows them)")
        if trace is None and (not traces or limit is None):
            # Work outside any request (a plain asyncio program) has no trace: show it as
            # one tree of its own, its top-level operations cut to the limit. Beside
            # requests it is mostly the server's own tasks, so there only with --all.
            untraced = [event for event in store.iter_events() if event.trace_id is None]
            if untraced:
                lines = build_tree(untraced).render(points=False).splitlines()
                roots = [i for i, line in enumerate(lines) if not line.startswith(" ")]
                hidden = 0 if limit is None else max(len(roots) - limit, 0)
                cut = roots[-hidden] if hidden else len(lines)
                print("\noutside any trace")
                print("\n".join("  " + line for line in lines[:cut]))
                if hidden:
                    print(f"\n({hidden} more top-level operations; --all shows them)")
    return 0


def _serve(target: str, database: str, host: str, port: int) -> int:
    import uvicorn

    import ascope

    module_name, _, attribute = target.partition(":")
    sys.path.insert(0, os.getcwd())
    app = getattr(importlib.import_module(module_name), attribute or "app")
    ascope.configure(sinks=[f"sqlite:{database}"])
    uvicorn.run(ascope.install(app), host=host, port=port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
