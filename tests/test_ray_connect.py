"""Starting a local Ray: a start that Ray reports as timed out (a loaded machine) is tried once more."""

import pytest

from embedfleet.gateway.queue.ray.connect import LOCAL_START_ATTEMPTS, start_local

TIMED_OUT = "The current node timed out during startup. This could happen because some of the raylet failed"


class Starts:
    """``init`` failing with the given errors in turn, then succeeding; counts the shutdowns between."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.inits = self.shutdowns = 0

    def init(self) -> None:
        self.inits += 1
        if self.errors:
            raise self.errors.pop(0)

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_start_up_timeout_is_retried_after_a_shutdown() -> None:
    starts = Starts(Exception(TIMED_OUT))
    start_local(starts.init, starts.shutdown)
    assert (starts.inits, starts.shutdowns) == (2, 1)


def test_other_failures_and_the_last_timeout_are_raised() -> None:
    other = Starts(ValueError("num_cpus must be positive"))
    with pytest.raises(ValueError, match="num_cpus"):
        start_local(other.init, other.shutdown)
    assert (other.inits, other.shutdowns) == (1, 0)
    always = Starts(*(Exception(TIMED_OUT) for _ in range(LOCAL_START_ATTEMPTS)))
    with pytest.raises(Exception, match="timed out during startup"):
        start_local(always.init, always.shutdown)
    assert always.inits == LOCAL_START_ATTEMPTS
