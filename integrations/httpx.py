"""httpx: one child operation per outgoing request, and the trace passed downstream.

The request methods of httpx's network transports, ``HTTPTransport.handle_request`` and
``AsyncHTTPTransport.handle_async_request``, are wrapped on the classes. That is the
transport API every ``Client``/``AsyncClient`` (and ``httpx.get`` and friends) sends
through, so clients created before ``enable()`` are covered, each redirect hop is its
own operation, and the header is set on the request exactly as it goes on the wire,
after event hooks and auth have run. In-process transports (``ASGITransport``,
``MockTransport``, ``WSGITransport``) reach no other service and are left alone.

Per request: ``http_client_start`` (method, URL with userinfo and sensitive query values
redacted, the ``traceparent`` sent) and ``http_client_complete`` (status, duration until
the response body was read to its end or the response closed, error, time until the
headers arrived, body bytes received). The operation nests under the current one
(request, task, function), so the N calls of a handler show up as its children; it stops
being the current operation when the headers arrive (the caller's code goes on while the
body streams), and completes from the response's stream: the transport's stream is
wrapped in one that counts the bytes and records the end, the first of exhausted,
closed, or failed. A response that is neither read to its end nor closed (a stream the
caller abandons) never completes: its operation has a start and no end, which the tree
shows as ``(not finished)``.

``traceparent`` is ``00-<trace id>-<span id>-01``: the trace id of the current operation
(the incoming request's, when the ASGI middleware is on) or a new one, which the
client operation then carries; the span id is this request's correlation id in 16 hex
digits, so the downstream service's request names its parent. A ``traceparent`` the
caller set for another trace is kept as it is; outside any trace, one the request
already carries (the caller's, or a redirect's previous hop's) is kept and joined. A
request the ASGI middleware's ``sample_rate`` left out records nothing but still passes
its trace on, as ``00-<trace id>-<random span id>-00`` (not sampled), so the services it
calls drop it too.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from ascope import _context as _c
from ascope import _pipeline, runtime
from ascope._report import _finish, _now, _pop, _since, _start

from . import _traceparent
from ._asgi_base import _error_payload
from ._patch import Patches
from ._redact import redact_url

__all__ = ["install", "uninstall"]

LIBRARY = "httpx"


def _open(request: Any) -> int | None:
    """Open the client operation for ``request`` and set its traceparent; its id or None."""
    frame = _c.current.get()
    if not frame[_c.ENABLED]:
        trace = frame[_c.TRACE]
        if trace is not None and frame[_c.CID] is None and "traceparent" not in request.headers:
            # A request the middleware's sampling left out: nothing is recorded, but its
            # trace goes on, marked not sampled, so the services it calls (deciding by the
            # same trace id, or by the flag) leave it out too.
            request.headers["traceparent"] = _traceparent.format(
                trace, _traceparent.new_span_id(), "00")
        return None
    cid = next(_c.ids)
    headers = request.headers
    given = headers.get("traceparent")
    parsed = _traceparent.parse(given) if given is not None else None
    joined = parsed.trace_id if parsed is not None else None
    trace = frame[_c.TRACE]
    if trace is None:
        # Outside any trace, a request that already carries a traceparent belongs to that
        # trace (the caller's own, or the previous hop's: httpx copies the header onto a
        # redirect), sent as it is; one without starts a new trace.
        trace = joined or _c.new_trace_id()
        keep = given is not None
    else:
        keep = given is not None and joined != trace  # another trace: theirs to pass on
    traceparent = given if keep else f"00-{trace}-{cid:016x}-01"
    if not keep:
        headers["traceparent"] = traceparent
    return _start("http_client_start",
                  (request.method, redact_url(str(request.url)), traceparent), cid, trace)


def _close(cid: int, status: Any, error: BaseException | None) -> None:
    """The request failed before its headers arrived."""
    if error is not None:
        runtime.report_error(error, correlation_id=cid, source="http_client")
    _finish(cid, "http_client_complete",
            lambda frame, now: (status, _since(frame, now),
                                None if error is None else type(error).__qualname__,
                                None, 0))


class _Body:
    """The end of one client operation, recorded from the response's stream."""

    __slots__ = ("cid", "done", "frame", "headers_ns", "size", "status")

    def __init__(self, cid: int, frame: _c.Frame, status: Any, headers_ns: int | None
                 ) -> None:
        self.cid = cid
        # The operation's own frame, ring included: its end and a failure while reading
        # go to its trace and to the ring it started on, wherever the body is read (a
        # worker thread's events reach its loop's ring the same way).
        self.frame = frame
        self.status = status
        self.headers_ns = headers_ns
        self.size = 0
        # Taken by the first finish() and never released: the end is recorded once even
        # when a sync response is read to its end in one thread and closed in another.
        # A check-then-set of a flag can let both through (a thread switch between the two
        # under a tracer, or no GIL at all); a non-blocking acquire is an atomic
        # test-and-set on every build, and the second caller returns at once, as before.
        self.done = threading.Lock()

    def finish(self, error: BaseException | None) -> None:
        if not self.done.acquire(blocking=False):
            return
        try:
            if _c.STATE.on:
                now = _now()
                if error is not None:
                    _pipeline.emit_event("error", now, self.frame,
                                         _error_payload(error, "http_client"))
                _pipeline.emit_event(
                    "http_client_complete", now, self.frame,
                    (self.status, _since(self.frame, now),
                     None if error is None else type(error).__qualname__, self.headers_ns,
                     self.size))
        except Exception:
            _c.STATE.internal_errors += 1


class _SyncStream(httpx.SyncByteStream):
    """A sync transport's response stream, passed through, its end recorded."""

    def __init__(self, stream: httpx.SyncByteStream, body: _Body) -> None:
        self._stream = stream
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        body = self._body
        try:
            for chunk in self._stream:
                body.size += len(chunk)
                yield chunk
        except GeneratorExit:  # the reader stopped early: the end is its close()
            raise
        except BaseException as error:
            body.finish(error)
            raise
        body.finish(None)

    def close(self) -> None:
        try:
            self._stream.close()
        except BaseException as error:
            self._body.finish(error)
            raise
        self._body.finish(None)


class _AsyncStream(httpx.AsyncByteStream):
    """An async transport's response stream, passed through, its end recorded."""

    def __init__(self, stream: httpx.AsyncByteStream, body: _Body) -> None:
        self._stream = stream
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        body = self._body
        try:
            async for chunk in self._stream:
                body.size += len(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as error:
            body.finish(error)
            raise
        body.finish(None)

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except BaseException as error:
            self._body.finish(error)
            raise
        self._body.finish(None)


def _received(cid: int, response: Any, asynchronous: bool) -> None:
    """The headers are in: the operation stops being current; its end waits for the body."""
    try:
        frame = _pop(cid)
        body = _Body(cid, frame, getattr(response, "status_code", None),
                     _since(frame, _now()))
    except Exception:
        _c.STATE.internal_errors += 1
        return
    try:
        stream = response.stream
        # A response whose body was read already (httpx.Response(content=...) from a
        # test double, say): nothing will iterate or close its stream again.
        if response.is_stream_consumed or response.is_closed:
            body.finish(None)
            return
        if asynchronous and isinstance(stream, httpx.AsyncByteStream):
            response.stream = _AsyncStream(stream, body)
            return
        if not asynchronous and isinstance(stream, httpx.SyncByteStream):
            response.stream = _SyncStream(stream, body)
            return
    except Exception:
        _c.STATE.internal_errors += 1
    body.finish(None)  # a stream ascope does not know: the end is now


def _start_quietly(patches: Patches, request: Any) -> int | None:
    if not (patches.active and _c.STATE.on):
        return None
    try:
        return _open(request)
    except Exception:  # never let the observer break the request
        _c.STATE.internal_errors += 1
        return None


def _make_sync(patches: Patches, original: Any) -> Any:
    @functools.wraps(original)
    def handle_request(self: Any, request: Any) -> Any:
        cid = _start_quietly(patches, request)
        if cid is None:
            return original(self, request)
        try:
            response = original(self, request)
        except BaseException as error:
            _close(cid, None, error)
            raise
        _received(cid, response, False)
        return response

    return handle_request


def _make_async(patches: Patches, original: Any) -> Any:
    @functools.wraps(original)
    async def handle_async_request(self: Any, request: Any) -> Any:
        cid = _start_quietly(patches, request)
        if cid is None:
            return await original(self, request)
        try:
            response = await original(self, request)
        except BaseException as error:  # cancellation too: the request did end
            _close(cid, None, error)
            raise
        _received(cid, response, True)
        return response

    return handle_async_request


_patches: Patches | None = None


def install() -> None:
    global _patches
    if _patches is not None:
        return
    patches = Patches()
    patches.wrap(httpx.HTTPTransport, "handle_request", functools.partial(_make_sync, patches))
    patches.wrap(httpx.AsyncHTTPTransport, "handle_async_request",
                 functools.partial(_make_async, patches))
    patches.active = True
    _patches = patches


def uninstall() -> None:
    global _patches
    if _patches is not None:
        _patches.restore()
        _patches = None
