# cython: language_level=3, wraparound=False
"""The hottest report calls, compiled (Cython). ``ascope/runtime.py`` and
``ascope/_tasks.py`` hold the same code in Python, which runs where this module was not
built or ``ASCOPE_NO_EXTENSIONS=1`` is set; tests/test_speedups.py checks that both record
identical events, and CI runs the whole suite on each.

Everything here mirrors a Python function line for line (same frame and event tuples,
same fallbacks); it is compiled to drop the interpreter's work, not to do anything else.
Anything off the fast path calls back into the Python code.
"""

from cpython.contextvars cimport PyContextVar_Reset, PyContextVar_Set, get_value
from cpython.iterator cimport PyIter_Next
from cpython.object cimport PyObject
from cpython.pyport cimport PY_SSIZE_T_MAX
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

import asyncio
import os
from time import time_ns
from collections import deque

from ascope import _context as _c
from ascope import _events, _pipeline, _report, _tasks, _values

cdef object _current = _c.current
cdef object _STATE = _c.STATE
cdef object _ROOT = _c.ROOT
cdef object _SETTINGS = _values.SETTINGS
cdef object _capture_args = _values.capture_args
cdef object _capture = _values.capture
cdef object _append_slow = _pipeline.append_slow
cdef object _text = _report._text
cdef object _pop = _report._pop
cdef object _internal_error = _report._internal_error
cdef object _MISSING = _tasks._MISSING
cdef object _ids = _c.ids
cdef object _task_ids = _c.task_ids
cdef object _deque_append = deque.append  # called unbound: no bound method per event

cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)
    long long PyLong_AsLongLongAndOverflow(object value, int *overflow) except? -1

cdef extern from *:
    const char *ASCOPE_SOURCE_HASH  # defined by setup.py: the sha256 of this file

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void *PyUnicode_DATA(object text)

#: The hash of the source this module was built from: the runtime uses the module only
#: when it matches the _speedups.pyx beside it (_context.load_speedups).
SOURCE_HASH = ASCOPE_SOURCE_HASH.decode()


def rebind_ids():
    """After a fork, take ids from the child's own counter (see _context.reseed_ids)."""
    global _ids, _task_ids
    _ids = _c.ids
    _task_ids = _c.task_ids


_c._after_reseed.append(rebind_ids)


cdef inline long long _now() noexcept:
    # time.perf_counter_ns() is clock_gettime(CLOCK_MONOTONIC) on Linux (CPython's
    # _PyTime_GetPerfCounter); setup.py builds this module on Linux only.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000LL + ts.tv_nsec


def perf_counter_ns():
    """This module's clock: the same as ``time.perf_counter_ns()``."""
    return _now()


# -- trace ids (_context.new_trace_id) -------------------------------------------------------

cdef unsigned long long _trace_state = 0
cdef const char *_HEX_DIGITS = b"0123456789abcdef"


def reseed_trace_ids():
    """A new random start for trace ids: at import, and in a forked child (which would
    otherwise make the same ids as its parent). Without ``os.urandom`` (no entropy source)
    the process id and the clocks are mixed into the state instead, as ``random.seed()``
    does: never the parent's sequence."""
    global _trace_state
    try:
        _trace_state = int.from_bytes(os.urandom(8), "little")
    except Exception:
        _trace_state ^= ((<unsigned long long>os.getpid() << 40) ^ <unsigned long long>_now()
                         ^ (<unsigned long long>time_ns() * 0x9E3779B97F4A7C15ULL))


reseed_trace_ids()
_c._after_reseed.append(reseed_trace_ids)


cdef inline unsigned long long _random64() noexcept:
    # splitmix64: a counter through a 64-bit mix, so a process's ids never repeat (a
    # bijection of the counter) and are uniform in every bit; processes start at random.
    global _trace_state
    _trace_state += 0x9E3779B97F4A7C15ULL
    cdef unsigned long long z = _trace_state
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def new_trace_id():
    """See ascope._context.new_trace_id: 12 hex digits of the time in milliseconds, then
    20 random ones (80 bits), written straight into the string."""
    cdef timespec ts
    cdef unsigned long long high, low
    cdef int i
    clock_gettime(CLOCK_REALTIME, &ts)
    high = <unsigned long long>ts.tv_sec * 1000ULL + <unsigned long long>ts.tv_nsec // 1000000ULL
    high = (high & 0xFFFFFFFFFFFFULL) << 16 | (_random64() & 0xFFFFULL)  # 48 + 16 bits
    low = _random64()  # the last 64 bits: what sampling decides on
    text = PyUnicode_New(32, 127)
    cdef unsigned char *out = <unsigned char *>PyUnicode_DATA(text)
    for i in range(16):
        out[15 - i] = _HEX_DIGITS[high & 15]
        high >>= 4
        out[31 - i] = _HEX_DIGITS[low & 15]
        low >>= 4
    return text


cdef inline object _args(object args):
    # _values.capture_args's fast path (a tuple of scalars and short strings is kept as it
    # is); every other case goes to it.
    cdef Py_ssize_t n
    if type(args) is not tuple:
        return _capture_args(args)
    n = len(<tuple>args)
    if n == 0:
        return args
    if n > _SETTINGS.max_length:
        return _capture_args(args)
    for arg in <tuple>args:
        kind = type(arg)
        if kind is int or arg is None or kind is bool or kind is float:
            continue
        if kind is str and len(<str>arg) <= _SETTINGS.max_string:
            continue
        return _capture_args(args)
    return args


cdef inline void _append(object ring, tuple event) except *:
    # An event tuple holds plain values and snapshots, never a container that could lead
    # back to it: untracked, the collector never walks the ring (CPython untracks such
    # tuples itself, but only at the first collection they live through).
    PyObject_GC_UnTrack(<PyObject*>event)
    if ring is not None:
        buffer = ring.buffer
        if len(buffer) < <Py_ssize_t>ring.high_water:
            _deque_append(buffer, event)
            return
    _append_slow(ring, event)


def report_function_entry(module, function, args=(), correlation_id=None):
    """See ascope.runtime.report_function_entry."""
    if not _STATE.on:
        return None
    cdef tuple parent
    cdef long long now
    try:
        parent = <tuple?>get_value(_current, _ROOT)
        if not parent[5]:
            return None
        parent_id = parent[0]
        cid = PyIter_Next(_ids) if correlation_id is None else correlation_id
        now = _now()
        ring = parent[8]
        _append(ring, ("function_entry", now, cid, parent_id, parent[3], parent[4], parent[6],
                       module if type(module) is str else _text(module),
                       function if type(function) is str else _text(function),
                       _args(args), None, None))
        PyContextVar_Set(_current, (cid, parent_id, parent, parent[3], parent[4], True,
                                    parent[6], now, ring))
        return cid
    except Exception:
        _internal_error()
        return None


cdef inline tuple _close(object correlation_id):
    # _report._pop: the operation's frame, its parent made current again (the common case,
    # the operation being the current frame, here; the rest in Python)
    cdef tuple frame = <tuple?>get_value(_current, _ROOT)
    if frame[0] == correlation_id:
        PyContextVar_Set(_current, frame[2] or _ROOT)
        return frame
    return <tuple?>_pop(correlation_id)


def report_function_exit(correlation_id, result=None, duration_ns=None, outcome="return"):
    """See ascope.runtime.report_function_exit."""
    if correlation_id is None:
        return
    cdef tuple frame
    cdef long long now
    try:
        frame = _close(correlation_id)
        if not _STATE.on:
            return
        now = _now()
        start = frame[7]
        if duration_ns is None and start:
            duration_ns = now - start
        kind = type(result)
        _append(frame[8], ("function_exit", now, frame[0], frame[1], frame[3], frame[4],
                           frame[6],
                           result if (result is None or kind is int or kind is float
                                      or kind is bool) else _capture(result),
                           duration_ns, outcome, None, None))
    except Exception:
        _internal_error()


# -- point events (runtime.report_line_execution and the AST instrumentation's others) -------

cdef object _capture_mapping = _values.capture_mapping


cdef inline tuple _frame_for(object correlation_id):
    # _report._frame_for
    cdef tuple frame = <tuple?>get_value(_current, _ROOT)
    if not frame[5]:
        return None
    if correlation_id is None or frame[0] == correlation_id:
        return frame
    return (correlation_id, None, None, frame[3], frame[4], True, frame[6], 0, frame[8])


cdef inline tuple _event(object kind, object ts_ns, object frame, object payload):
    # _pipeline.emit_event's tuple, with a payload of two values or more inlined (the hot
    # format, see there): the payload tuple is not kept, so it never sits in the ring as a
    # tracked object (a tuple holding a dict stays tracked however plain the dict is).
    cdef tuple event
    cdef Py_ssize_t i, n
    if type(payload) is not tuple or len(<tuple>payload) < 2:
        return (kind, ts_ns, frame[0], frame[1], frame[3], frame[4], frame[6], payload)
    n = len(<tuple>payload)
    event = PyTuple_New(7 + n)
    _set(event, 0, kind)
    _set(event, 1, ts_ns)
    _set(event, 2, frame[0])
    _set(event, 3, frame[1])
    _set(event, 4, frame[3])
    _set(event, 5, frame[4])
    _set(event, 6, frame[6])
    for i in range(n):
        _set(event, 7 + i, (<tuple>payload)[i])
    return event


cdef inline void _set(tuple event, Py_ssize_t i, object value) noexcept:
    Py_INCREF(value)  # PyTuple_SET_ITEM steals a reference
    PyTuple_SET_ITEM(event, i, value)


cdef inline void _emit(str kind, long long now, tuple frame, tuple payload) except *:
    # _pipeline.emit_event
    _append(frame[8], _event(kind, now, frame, payload))


def emit_event(kind, ts_ns, frame, payload):
    """See ascope._pipeline.emit_event: the same event, its payload inlined when it is a
    tuple of two values or more, appended untracked by the garbage collector."""
    _append(frame[8], _event(kind, ts_ns, frame, payload))


def report_line_execution(correlation_id, line, context=None, source=None, node_id=None):
    """See ascope.runtime.report_line_execution."""
    cdef long long now
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            now = _now()  # before the payload's values are captured, as in Python
            _emit("line_execution", now, frame,
                  (line, None if context is None else _capture(context), node_id, source))
    except Exception:
        _internal_error()


def report_expression_value(correlation_id, expression, value, line, source=None,
                            node_id=None):
    """See ascope.runtime.report_expression_value."""
    cdef long long now
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            now = _now()  # before the payload's values are captured, as in Python
            _emit("expression_value", now, frame,
                  (_text(expression), _capture(value), line, node_id, source))
    except Exception:
        _internal_error()


def report_variable_snapshot(correlation_id, variables, line, source=None, node_id=None):
    """See ascope.runtime.report_variable_snapshot."""
    cdef long long now
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            now = _now()  # before the payload's values are captured, as in Python
            _emit("variable_snapshot", now, frame,
                  (_capture_mapping(variables), line, node_id, source))
    except Exception:
        _internal_error()


def report_ast_branch_execution(correlation_id, branch_type, condition, branch_taken, line,
                                node_id):
    """See ascope.runtime.report_ast_branch_execution."""
    cdef long long now
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            now = _now()  # before the payload's values are captured, as in Python
            _emit("branch_execution", now, frame,
                  (_text(branch_type), _text(condition), _capture(branch_taken), line,
                   node_id))
    except Exception:
        _internal_error()


def report_ast_loop_iteration(correlation_id, loop_type, iteration, current_value, line,
                              node_id):
    """See ascope.runtime.report_ast_loop_iteration."""
    cdef long long now
    if not _STATE.on:
        return
    try:
        frame = _frame_for(correlation_id)
        if frame is not None:
            now = _now()  # before the payload's values are captured, as in Python
            _emit("loop_iteration", now, frame,
                  (_text(loop_type), iteration, _capture(current_value), line, node_id))
    except Exception:
        _internal_error()

# -- the task factory (ascope/_tasks.py: make_task_factory, _task_done) ----------------------

cdef object _Task = asyncio.Task
cdef object _current_task = _tasks._current_task
cdef object _ring_of = _pipeline.ring_of
cdef dict _rings = _pipeline._rings
cdef object _coroutine_name = _tasks._coroutine_name


cdef class TaskFactory:
    """ascope's task factory over ``delegate`` (None: build ``asyncio.Task`` here). See
    ``_tasks.make_task_factory``, whose closure this is, line for line."""

    cdef readonly object ascope_delegate
    cdef object create

    def __init__(self, delegate):
        self.ascope_delegate = delegate
        self.create = delegate

    def __call__(self, loop, coro, **kwargs):
        cdef tuple parent, child
        cdef bint recorded
        create = self.create
        parent = None
        if _STATE.on:
            try:
                parent = <tuple?>get_value(_current, _ROOT)
                if not parent[5]:
                    parent = None
            except Exception:  # not a frame: counted, and the task is made as if off
                _STATE.internal_errors += 1
                parent = None
        if parent is None:
            if create is None:
                return _Task(coro, loop=loop, **kwargs)
            return create(loop, coro, **kwargs)
        try:
            task_id = PyIter_Next(_task_ids)
            start = _now()
            ring = parent[8]
            if ring is None or ring.loop is not loop:
                ring = _rings.get(loop) or _ring_of(loop)  # _ring_of, its dict read inlined
            parent_id = parent[0]
            cid = PyIter_Next(_ids)
            child = (cid, parent_id, parent, task_id, parent[4], True, parent[6], start, ring)
            recorded = (parent_id is not None or parent[3] is not None
                        or _current_task(loop) is not None)
            if recorded:
                name = getattr(coro, "__qualname__", None)
                _append(ring, ("task_spawn", start, cid, parent_id, task_id, parent[4],
                               parent[6], task_id,
                               name if type(name) is str else _coroutine_name(coro),
                               kwargs.get("name")))
        except Exception:
            _STATE.internal_errors += 1
            if create is None:
                return _Task(coro, loop=loop, **kwargs)
            return create(loop, coro, **kwargs)
        context = kwargs.get("context")
        try:
            if context is not None:
                try:
                    context.run(_current.set, child)
                except RuntimeError:
                    pass
                task = (_Task(coro, loop=loop, **kwargs) if create is None
                        else create(loop, coro, **kwargs))
            else:
                token = PyContextVar_Set(_current, child)
                try:
                    if create is not None:
                        task = create(loop, coro, **kwargs)
                    elif len(kwargs) - ("context" in kwargs):
                        task = _Task(coro, loop=loop, **kwargs)
                    else:  # no keywords but context=None (uvloop passes it): the same Task
                        task = _Task(coro, loop=loop)
                finally:
                    PyContextVar_Reset(_current, token)
        except BaseException as error:
            if recorded:
                now = _now()
                _append(child[8], _event("task_exit", now, child,
                                         ("not_created", now - start,
                                          type(error).__qualname__, kwargs.get("name"))))
            raise
        if recorded:
            if task.done():
                task_done(child, task)
            else:
                exit_ = <TaskExit>TaskExit.__new__(TaskExit)
                exit_.frame = child
                task.add_done_callback(exit_)
        return task


cdef class TaskExit:
    """A task's done callback: ``functools.partial(_tasks._task_done, frame)``, compiled."""

    cdef tuple frame

    def __call__(self, task):
        task_done(self.frame, task)


cpdef task_done(tuple frame, task):
    """See ``_tasks._task_done``."""
    cdef long long now
    if not _STATE.on:
        return
    try:
        if task.cancelled():
            outcome, error = "cancelled", None
        else:
            exception = getattr(task, "_exception", _MISSING)
            if exception is _MISSING:
                exception = task.exception()
            if exception is None:
                outcome, error = "result", None
            else:
                outcome, error = "exception", type(exception).__qualname__
        try:
            name = task.get_name()
        except Exception:
            name = None
        now = _now()
        _append(frame[8], ("task_exit", now, frame[0], frame[1], frame[3], frame[4],
                           frame[6], outcome, now - <long long>frame[7], error, name))
    except Exception:
        _STATE.internal_errors += 1


# -- queries (integrations/_queries.py: every database integration's start and end) ---------

cdef inline object _label(object value):
    # _report._text, its common case here: a short string kept as it is
    if type(value) is str and len(<str>value) <= 512:
        return value
    return _text(value)


def query_start(statement, params, database, metadata):
    """See ascope.integrations._queries.start (the same code)."""
    cdef tuple parent
    cdef long long now
    if not _STATE.on:
        return None
    try:
        parent = <tuple?>get_value(_current, _ROOT)
        if not parent[5]:
            return None
        # _queries._parameters
        kind = type(params)
        if params is None:
            captured = None
        elif (kind is tuple or kind is dict) and len(params) <= _SETTINGS.max_length:
            captured = _args(params) if kind is tuple else _capture_args(params)
        else:
            captured = _capture(params)
        payload = (_label(statement), captured, _label(database), metadata)
        # _report._start
        cid = PyIter_Next(_ids)
        now = _now()
        frame = (cid, parent[0], parent, parent[3], parent[4], True, parent[6], now,
                 parent[8])
        PyContextVar_Set(_current, frame)
        _emit("query_start", now, frame, payload)
        return cid
    except Exception:
        _STATE.internal_errors += 1
        return None


def query_complete(correlation_id, statement, rows=None, error=None):
    """See ascope.integrations._queries.complete (the same code; an error takes the Python
    path)."""
    cdef tuple frame
    cdef long long now
    if correlation_id is None:
        return
    try:
        if error is not None:
            from ascope.integrations._queries import PURE_COMPLETE
            PURE_COMPLETE(correlation_id, statement, rows, error)
            return
        # runtime.report_query_complete -> _report._finish
        frame = _close(correlation_id)
        if not _STATE.on:
            return
        now = _now()
        start = frame[7]
        _emit("query_complete", now, frame,
              (_label(statement), rows if rows is None or type(rows) is int else _capture(rows),
               now - start if start else None, None))
    except Exception:
        _internal_error()


# -- the writer ------------------------------------------------------------------------------

cdef object _schema_get = _events.SCHEMA.get
cdef object _normalize = _values.normalize
cdef object _id_text = _events.id_text
cdef object _guarded_repr = _values.guarded_repr
cdef object _python_build_rows = _events.PURE_BUILD_ROWS


cdef inline bint _is_int64(object value) except -1:
    # type(value) is int and -2**63 <= value <= 2**63 - 1
    cdef int overflow = 0
    PyLong_AsLongLongAndOverflow(value, &overflow)
    return overflow == 0


cdef object _flat(object value, object kind):
    # _values._normalize_flat: a short container of plain scalars copied without a walk;
    # None when it needs one.
    # Clamped: configure() takes any positive int, a C length cannot exceed this.
    cdef Py_ssize_t max_string = min(_SETTINGS.max_string, PY_SSIZE_T_MAX)
    if len(value) > _SETTINGS.max_length + 1:
        return None
    if kind is dict:
        for key in <dict>value:
            if type(key) is not str:
                return None
        items = (<dict>value).values()
    else:
        items = value
    for item in items:
        item_kind = type(item)
        if item_kind is str:
            if len(<str>item) > max_string:
                return None
        elif item_kind is int:
            if not _is_int64(item):
                return None
        elif item_kind is float:
            if item - item != 0.0:
                return None
        elif item_kind is not bool and item is not None:
            return None
    return dict(value) if kind is dict else list(value)


def build_rows(batch, wall_offset_ns):
    """See ascope._events.build_rows (the writer's hottest code, line for line)."""
    # Clamped: configure() takes any positive int, a C length cannot exceed this.
    cdef Py_ssize_t max_string = min(_SETTINGS.max_string, PY_SSIZE_T_MAX)
    cdef list rows = []
    cdef list data
    cdef tuple raw
    cdef Py_ssize_t n
    for item in batch:
        if type(item) is not tuple:  # not a hot-path tuple: the Python code says what it is
            rows.extend(_python_build_rows([item], wall_offset_ns))
            continue
        raw = <tuple>item
        try:
            n = len(raw)
            if n == 8:
                kind, ts_ns, correlation_id, parent_id, task_id, trace_id, _scope, payload = raw
            else:  # a hot event, its payload inlined (see _pipeline.emit_event)
                kind, ts_ns, correlation_id, parent_id, task_id, trace_id, _scope = raw[:7]
                payload = raw[7:]
            fields = _schema_get(kind)
            # report_event's mapping, or a payload that is not a sequence of the kind's
            # values: recorded whole, and never iterated here (an iterator the program
            # still holds would be used up by the writer's thread).
            if fields is None or (type(payload) is not tuple and type(payload) is not list):
                data_object = (_normalize(payload) if isinstance(payload, dict)
                               else {"value": _normalize(payload)})
            else:
                data = []
                for value in payload:
                    kind_of = type(value)
                    if ((kind_of is str and len(<str>value) <= max_string) or value is None
                            or kind_of is bool or (kind_of is int and _is_int64(value))):
                        data.append(value)
                    elif kind_of is dict or kind_of is tuple or kind_of is list:
                        # _values.normalize's first step for containers, inlined
                        flat = _flat(value, kind_of)
                        data.append(flat if flat is not None else _normalize(value))
                    else:
                        data.append(_normalize(value))
                if len(data) > len(fields):
                    del data[len(fields):]  # values past the kind's fields have no name
                # New, and holding nothing that could lead back to it: the collector need
                # not walk it (nor the row), however long the batch takes to write.
                PyObject_GC_UnTrack(<PyObject*>data)
                data_object = data
            if correlation_id is not None and not (type(correlation_id) is int
                                                   and _is_int64(correlation_id)):
                correlation_id = _id_text(correlation_id)  # an id given by hand
            if parent_id is not None and not (type(parent_id) is int
                                              and _is_int64(parent_id)):
                parent_id = _id_text(parent_id)
            if trace_id is not None and not (type(trace_id) is str
                                             and len(<str>trace_id) <= 64):
                trace_id = _guarded_repr(trace_id, 64)
            row = (kind, ts_ns, ts_ns + wall_offset_ns, correlation_id, parent_id, task_id,
                   trace_id, data_object)
            PyObject_GC_UnTrack(<PyObject*>row)
            rows.append(row)
        except Exception as error:
            _STATE.internal_errors += 1
            rows.append(("ascope_error", 0, wall_offset_ns, None, None, None, None,
                         {"error": type(error).__qualname__, "while": "building"}))
    return rows


# -- the SQLite store's segment index (ascope/sinks/_sqlite.py) ---------------------------

from ascope.sinks import _sqlite as _store

cdef tuple _KEYS = _store.KEYS
cdef tuple _ID_KEYS = _store.ID_KEYS
cdef object _BUCKET_BITS = _store.ID_BUCKET_BITS
cdef Py_ssize_t _TRACE = _store.TRACE


cdef dict _count(list rows, Py_ssize_t index):
    # Counter(map(itemgetter(index), rows)): each key's count, keys in first-seen order.
    # A row's neighbours mostly hold the very same object (an operation's id, a trace id):
    # runs of it are counted without a dict look-up.
    cdef dict counts = {}
    cdef Py_ssize_t run = 0
    last = None
    for row in rows:
        key = (<tuple?>row)[index]
        if key is last and run:
            run += 1
            continue
        if run:
            counts[last] = counts.get(last, 0) + run
        last = key
        run = 1
    if run:
        counts[last] = counts.get(last, 0) + run
    return counts


cdef bint _count_buckets(list rows, Py_ssize_t index, object bucket, dict buckets) except -1:
    # The buckets of index's ids, counted straight from the rows: what counting each id
    # first and then its bucket gives when every id there is an int that fits 64 bits (or
    # None), ids of one bucket mostly in runs. False, with nothing counted, otherwise.
    cdef long long value, current = 0
    cdef Py_ssize_t run = 0
    cdef int overflow
    cdef list found = []  # (bucket, count) in first-seen order, a bucket once or more
    for row in rows:
        key = (<tuple?>row)[index]
        if key is None:
            continue
        if type(key) is not int:
            return False
        value = PyLong_AsLongLongAndOverflow(key, &overflow)
        if overflow:
            return False
        value >>= 10  # ID_BUCKET_BITS (checked at import); >> floors, as Python's does
        if run and value == current:
            run += 1
            continue
        if run:
            found.append((current, run))
        current = value
        run = 1
    if run:
        found.append((current, run))
    for value, count in found:
        slot = (bucket, value)
        buckets[slot] = buckets.get(slot, 0) + count
    return True


if _BUCKET_BITS != 10:
    raise ImportError("ascope._speedups expects ID_BUCKET_BITS = 10: rebuild it")


def segment_index(rows):
    """See ascope.sinks._sqlite.python_segment_index (the same keys, in the same order)."""
    cdef list keys = []
    cdef dict buckets = {}
    cdef list row_list = rows if type(rows) is list else list(rows)
    for name, index in _KEYS:
        for key, count in _count(row_list, index).items():
            if key is not None:
                keys.append((name, key, count))
    for name, bucket, index in _ID_KEYS:
        if _count_buckets(row_list, index, bucket, buckets):
            continue
        for key, count in _count(row_list, index).items():
            if type(key) is int:
                slot = (bucket, key >> _BUCKET_BITS)
                buckets[slot] = buckets.get(slot, 0) + count
            elif key is not None:
                keys.append((name, key, count))
    keys += [(bucket, key, count) for (bucket, key), count in buckets.items()]
    traces = _count(row_list, _TRACE)
    traces.pop(None, None)
    first = last = None
    for row in row_list:
        ts = (<tuple>row)[1]
        if first is None:
            first = last = ts
        elif ts < first:
            first = ts
        elif ts > last:
            last = ts
    if first is None:
        raise ValueError("segment_index() of no rows")
    return keys, list(traces), first, last
