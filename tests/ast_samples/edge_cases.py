# ruff: noqa: B012, SIM107, F841, UP028 - unusual code on purpose: these are test subjects
"""Corner cases of control flow and scoping for the AST rewriter's semantics tests."""

import sys


def return_in_finally(fail):
    try:
        if fail:
            raise ValueError("swallowed")
        return "body"
    finally:
        return "finally"


def continue_in_finally(n):
    seen = []
    for i in range(n):
        try:
            if i % 2:
                continue
            seen.append(i)
        finally:
            seen.append(-i)
            continue
    return seen


def break_in_except(values):
    total = 0
    for value in values:
        try:
            total += 10 // value
        except ZeroDivisionError:
            break
    else:
        total = -1
    return total


def while_else(limit):
    i = 0
    while i < 30:
        i += 1
        if i == limit:
            break
    else:
        return ("exhausted", i)
    return ("broke", i)


def genexp_escapes(rows):
    factor = 3
    return (r * factor if r else -1 for r in rows)


def nested_with_comprehension(rows):
    def inner(offset):
        return [r + offset for r in rows if r]

    return inner


def nested_class_comprehension():
    class Table:
        squares = [i * i for i in range(4)]
        total = sum(squares)

    return Table.squares, Table.total


def lambda_defaults(flag):
    pick = lambda value, default=(1 if flag else 2): value or default  # noqa: E731
    return pick(0), pick(5)


def star_targets(values):
    first, *rest = values
    (a, b), c = (1, 2), 3
    return first, rest, a + b + c


def growing_list(n):
    items = [0]
    for item in items:
        if len(items) < n:
            items.append(item + 1)
    return items


def mutated_dict():
    data = {"a": 1}
    for key in data:
        data[key + "x"] = 2
    return data


def deleting_loop_variable(values):
    out = []
    for value in values:
        out.append(value)
        del value
    return out


def match_in_loop(commands):
    handled = []
    for command in commands:
        match command:
            case ("add", n) if n > 0:
                handled.append(n)
            case ("add", _):
                handled.append(0)
            case _:
                handled.append(None)
    return handled


def uses_class_cell():
    class Holder:
        def which(self):
            return __class__.__name__

    return Holder().which()


def frame_locals_names():
    marker = 1
    return sorted(name for name in sys._getframe().f_locals if not name.startswith("_"))


def recursive(n):
    if n <= 1:
        return 1
    return n * recursive(n - 1)


def walrus_in_comprehension_condition(values):
    doubled = [d for v in values if (d := v * 2) > 2]
    return doubled, d


def early_return_in_loop(values):
    for index, value in enumerate(values):
        if value < 0:
            return index
    return None


async def async_comprehension_in_coroutine(n):
    async def numbers():
        for i in range(n):
            yield i

    return [i * 2 async for i in numbers() if i % 2 == 0]


def nested_generator_closed(n):
    def inner():
        try:
            for i in range(n):
                yield i
        finally:
            inner.closed = True

    generator = inner()
    first = next(generator)
    generator.close()
    return first, getattr(inner, "closed", False)


class SelfReferencing:
    def clone(self):
        return type(SelfReferencing()).__name__ if isinstance(self, SelfReferencing) else None


def outer_with_recursive_inner(n):
    def countdown(k):
        return 0 if k <= 0 else 1 + countdown(k - 1)

    return countdown
