"""Asynchronous constructs for the AST rewriter tests."""

import asyncio
import contextlib

EVENTS: list[str] = []


class Resource:
    def __init__(self, name):
        self.name = name

    async def __aenter__(self):
        EVENTS.append(f"enter {self.name}")
        return self.name

    async def __aexit__(self, *exc_info):
        EVENTS.append(f"exit {self.name}")
        return False


class Ticker:
    def __init__(self, n):
        self.n = n

    def __aiter__(self):
        self.i = 0
        return self

    async def __anext__(self):
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        await asyncio.sleep(0)
        return self.i


async def coroutine(x):
    await asyncio.sleep(0)
    if x < 0:
        raise ValueError(x)
    return x * 2


async def async_with_for(n):
    collected = []
    async with Resource("r") as name:
        async for tick in Ticker(n):
            collected.append((name, tick))
    values = [t async for t in Ticker(2)]
    return collected, values


async def async_generator(n):
    try:
        for i in range(n):
            sent = yield i
            if sent is not None:
                EVENTS.append(f"sent {sent}")
    finally:
        EVENTS.append("agen closed")


async def cancellable(event):
    try:
        await event.wait()
    except asyncio.CancelledError:
        EVENTS.append("cancelled")
        raise
    return "finished"


async def gathers(n):
    async def child(i):
        await asyncio.sleep(0)
        return i * i

    results = await asyncio.gather(*(child(i) for i in range(n)))
    async with contextlib.AsyncExitStack():
        total = sum(results)
    return total
