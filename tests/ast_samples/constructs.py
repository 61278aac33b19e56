"""Synchronous constructs for the AST rewriter tests."""

import functools

DECORATED_CALLS: list[str] = []


def simple(a, b=2, *args, c=3, **kwargs):
    """Docstring kept."""
    total = a + b
    total += c
    label: str = "sum"
    return total, label, args, kwargs


def branches(x):
    if x > 10:
        kind = "big"
    elif x > 5:
        kind = "medium"
    else:
        kind = "small"
    sign = "neg" if x < 0 else "pos"
    if x == 0:
        kind = "zero"
    return kind, sign


def loops(rows):
    total = 0
    for index, row in enumerate(rows):  # noqa: B007
        if row % 2:
            continue
        total += row
        if total > 1000:
            break
    else:
        total = -total
    n = 0
    while n < 3:
        n += 1
    return total, n


def counted(n):
    seen = 0
    for i in range(n):
        seen += i
    return seen


def unsized(n):
    out = []
    for value in (i * 10 for i in range(n)):
        out.append(value)
    return out


def nested_loops(n):
    pairs = 0
    for i in range(n):
        for j in range(n):
            if i == j:
                pairs += 1
    return pairs


def comprehensions(rows):
    squares = [r * r for r in rows if r % 2 == 0]
    table = {r: ("odd" if r % 2 else "even") for r in rows}
    unique = {r % 3 for r in rows}
    pairs = [(a, b) for a in range(3) for b in range(a)]
    lazy = sum(r for r in rows)
    return squares, table, unique, pairs, lazy


def walrus(values):
    if (count := len(values)) > 2:
        return count
    found = [y for v in values if (y := v * 2) > 2]
    return found, y


def exceptions(kind):
    log = []
    try:
        if kind == "value":
            raise ValueError("bad value")
        if kind == "key":
            raise KeyError("k")
        log.append("body")
    except ValueError as error:
        log.append(f"value:{error}")
    except (KeyError, TypeError):
        log.append("key")
    else:
        log.append("else")
    finally:
        log.append("finally")
    return log


def raises(error):
    raise error


def raises_later(n):
    total = 0
    for i in range(n):
        total += 10 // (i - 2)
    return total


def exception_groups(kinds):
    seen = []
    try:
        raise ExceptionGroup("group", [k("x") for k in kinds])
    except* ValueError as group:
        seen.append(("value", len(group.exceptions)))
    except* TypeError:
        seen.append(("type",))
    return seen


def matching(command):
    match command:
        case {"action": "move", "x": x, "y": y}:
            result = ("move", x, y)
        case [first, *rest] if first == "say":
            result = ("say", rest)
        case [first, *rest]:
            result = ("list", first, len(rest))
        case str() as text:
            result = ("text", text)
        case _:
            result = None
    return result


def matching_no_default(value):
    outcome = "none"
    match value:
        case 1 | 2:
            outcome = "small"
        case int(n) if n > 100:
            outcome = "large"
    return outcome


def closures(start):
    count = start

    def bump(by=1):
        nonlocal count
        count += by
        return count

    bump()
    bump(5)
    return count, bump


def make_counter():
    value = 0

    def counter():
        nonlocal value
        value += 1
        return value

    return counter


GLOBAL_COUNTER = 0


def uses_global():
    global GLOBAL_COUNTER
    GLOBAL_COUNTER += 1
    return GLOBAL_COUNTER


def generator(n):
    try:
        for i in range(n):
            received = yield i
            if received:
                yield ("got", received)
    finally:
        DECORATED_CALLS.append("generator closed")
    return "done"


def recorded_decorator(function):
    DECORATED_CALLS.append(function.__name__)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return function(*args, **kwargs)

    return wrapper


@recorded_decorator
def decorated_inner(x):
    return x * 2


def with_statement(path_like):
    import contextlib

    with contextlib.nullcontext(path_like) as value, contextlib.suppress(KeyError):
        length = len(value)
    return length


def expressions(rows):
    total = sum(rows)
    size = len(rows)
    return total / size if size else 0.0


def one_line_twice(a):
    x = 1 if a else 2; y = 3 if a else 4  # noqa: E702
    return x, y


def private_names():
    __hidden = 5
    return __hidden


def fstrings(name, width):
    return f"{name!r:>{width}} {name.upper() if name else ''}"


def lambdas_inside(rows):
    key = lambda r: -r if r else 0  # noqa: E731
    return sorted(rows, key=key)


def del_and_assert(d):
    assert isinstance(d, dict), "need a dict"
    d = dict(d)
    del d["a"]
    return d


class Base:
    def greet(self):
        return "base"


class Child(Base):
    def __init__(self):
        self.__secret = "s"

    def greet(self):
        parent = super().greet()
        return f"child+{parent}+{self.__secret}"

    @classmethod
    def build(cls):
        return cls()

    @staticmethod
    def static(x):
        return x + 1


def class_inside():
    class Local:
        def method(self):
            return [i for i in range(3)]

    return Local().method()


def registering(function):
    DECORATED_CALLS.append("registered " + function.__name__)
    return function


@registering
def registered(x):
    return x + 1


def many_statements(x):
    a0 = x
    a1 = a0 + 1
    a2 = a1 + 1
    a3 = a2 + 1
    a4 = a3 + 1
    a5 = a4 + 1
    a6 = a5 + 1
    a7 = a6 + 1
    a8 = a7 + 1
    a9 = a8 + 1
    a10 = a9 + 1
    a11 = a10 + 1
    a12 = a11 + 1
    a13 = a12 + 1
    a14 = a13 + 1
    a15 = a14 + 1
    a16 = a15 + 1
    a17 = a16 + 1
    a18 = a17 + 1
    return a18


def closed_early(n):
    for i in range(n):  # noqa: UP028 - a loop is what this sample is about
        yield i
    DECORATED_CALLS.append("never reached when closed early")
