import threading
import time

import pytest

from stacker._parallel import ordered_map


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_ordered_map_keeps_order_and_bounds_read_ahead(threads):
    lock = threading.Lock()
    started, most_ahead = [], [0]

    def work(i):
        with lock:
            started.append(i)
        time.sleep(0.002 * (i % 3))  # finish out of order
        return i * i

    results = []
    for value in ordered_map(work, range(30), threads):
        with lock:
            most_ahead[0] = max(most_ahead[0], len(started) - len(results))
        results.append(value)
    assert results == [i * i for i in range(30)]
    assert most_ahead[0] <= max(threads, 1) + 1  # in flight, plus the one just yielded


def test_ordered_map_raises_the_workers_error():
    def work(i):
        if i == 3:
            raise ValueError("slice 3 is broken")
        return i

    with pytest.raises(ValueError, match="slice 3"):
        list(ordered_map(work, range(10), 2))
