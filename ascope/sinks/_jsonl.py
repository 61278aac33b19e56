from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import IO

import orjson

from .._events import Event
from .._values import json_safe


class JsonlSink:
    """Appends one JSON object per event to a file (``Event.to_dict`` shape)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: IO[bytes] | None = None

    def write(self, events: Sequence[Event]) -> None:
        if self._file is None:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
        # One write per batch: O_APPEND keeps lines of two processes from interleaving.
        self._file.write(b"".join([_line(event) for event in events]))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def after_fork(self) -> None:
        """In a forked child: drop the parent's buffered handle unflushed; reopen on write."""
        self._file = None

    def __repr__(self) -> str:
        return f"JsonlSink({self.path!r})"


def _line(event: Event) -> bytes:
    raw = event.to_dict()
    try:
        return orjson.dumps(raw) + b"\n"
    except orjson.JSONEncodeError:  # a string that is not valid UTF-8: write it escaped
        return orjson.dumps(json_safe(raw)) + b"\n"


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[Event]:
    """Read events back from a JSON lines file."""
    with open(path, "rb") as file:
        for line in file:
            if line.strip():
                yield Event.from_dict(orjson.loads(line))
