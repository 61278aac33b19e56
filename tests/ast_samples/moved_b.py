"""Two copies of one function at different places in a file: ids must not change.

This copy sits lower in its file, after unrelated code.
"""

UNRELATED = [1, 2, 3]


def unrelated(a):
    return a


def stable(x):
    if x:
        y = 1 if x > 1 else 2
        return y
    return 0
