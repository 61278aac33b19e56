"""Two copies of one function at different places in a file: ids must not change."""


def stable(x):
    if x:
        y = 1 if x > 1 else 2
        return y
    return 0
