"""A bounded, ordered thread-pool map for streaming slices."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor


def ordered_map(func: Callable, items: Iterable, threads: int) -> Iterator:
    """``map(func, items)`` on a thread pool, in order, with bounded read-ahead.

    At most ``threads + 1`` items are in flight (running, waiting to run, or
    done and waiting), so memory stays a few slices whatever the stack's
    length. Decoders, scipy.ndimage and Pillow release the GIL, so threads run
    their heavy loops in parallel.

    Parameters
    ----------
    func : callable
        Applied to each item, in a worker thread.
    items : iterable
        The inputs.
    threads : int
        Worker threads; 1 or less runs in the calling thread.

    Yields
    ------
    result
        ``func(item)`` for each item, in order; a worker's exception is raised here.
    """
    if threads <= 1:
        yield from map(func, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                # One more than the workers: while the caller consumes a result,
                # every worker still has an item.
                if len(pending) > threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
