"""A small application the import-hook tests instrument."""

REGISTRY: dict[str, object] = {}


def register(function):  # a decorator above the instrumented one: it must see the wrapper
    REGISTRY[function.__name__] = function
    return function
