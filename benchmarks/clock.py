"""A clock of the seconds spent inside wrapped calls (TensorFlow-free: any benchmark process imports it)."""

import time


class Clock:
    """Seconds spent inside wrapped calls, accumulated until read."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed

    def read(self):
        seconds, self.seconds = self.seconds, 0.0
        return seconds
