import asyncio

RATE = 2


async def charge(amount: int) -> int:
    await asyncio.sleep(0)
    return Ledger().add(amount * RATE)


class Ledger:
    entries: list[int] = []

    def __init__(self) -> None:
        self.total = 0

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total

    @classmethod
    def empty(cls) -> "Ledger":
        return cls()

    @staticmethod
    def currency() -> str:
        return "EUR"

    @property
    def doubled(self) -> int:
        return self.total * 2

    def __repr__(self) -> str:
        return f"Ledger({self.total})"

    class Line:
        def amount(self) -> int:
            return 1


def lines(n: int):
    yield from range(n)
