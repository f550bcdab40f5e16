"""The bounded, expiring memory the proxy keeps of what the site said about callers."""

from sgcache.api3.memory import Expiring


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_held_for_its_ttl_and_no_longer():
    clock = Clock()
    memory: Expiring[str, int] = Expiring(10, 5.0, clock=clock)
    memory.put("a", 1)
    clock.now += 4.9
    assert memory.get("a") == (True, 1)
    clock.now += 0.1
    assert memory.get("a") == (False, None)


def test_the_ttl_counts_from_when_the_site_was_asked():
    clock = Clock()
    memory: Expiring[str, int] = Expiring(10, 5.0, clock=clock)
    memory.put("a", 1, since=clock.now - 4.0)
    clock.now += 1.0
    assert memory.get("a") == (False, None)


def test_none_is_remembered_as_an_answer():
    memory: Expiring[str, None] = Expiring(10, 5.0, clock=Clock())
    assert memory.get("nobody") == (False, None)
    memory.put("nobody", None)
    assert memory.get("nobody") == (True, None)


def test_past_its_size_the_least_recently_stored_goes_first():
    memory: Expiring[str, int] = Expiring(2, 60.0, clock=Clock())
    memory.put("a", 1)
    memory.put("b", 2)
    memory.put("a", 3)  # stored again: now the most recent
    memory.put("c", 4)
    assert len(memory) == 2
    assert memory.get("b") == (False, None)
    assert memory.get("a") == (True, 3) and memory.get("c") == (True, 4)


def test_clear_forgets_everything():
    memory: Expiring[str, int] = Expiring(10, 60.0, clock=Clock())
    memory.put("a", 1)
    memory.clear()
    assert len(memory) == 0 and memory.get("a") == (False, None)
