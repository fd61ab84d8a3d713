"""flowsite.auth.CredentialCache on its own: bounds, expiry, keys (API behaviour is in
tests/api/test_auth.py)."""

from __future__ import annotations

import pytest

from flowsite import auth


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl_and_a_hit_does_not_extend_it():
    clock = FakeClock()
    cache = auth.CredentialCache(ttl=300, max_entries=10, clock=clock)
    key = cache.key("ann", "pw")
    cache.put(key, 7, "pbkdf2_sha256$hash")
    clock.now += 299.9
    assert cache.get(key) == (7, "pbkdf2_sha256$hash", 1300.0)
    clock.now += 0.1
    assert cache.get(key) is None
    assert len(cache) == 0  # removed, not only hidden


def test_at_most_max_entries_least_recently_used_go_first():
    cache = auth.CredentialCache(ttl=300, max_entries=3, clock=FakeClock())
    keys = [cache.key(f"user{i}", "pw") for i in range(5)]
    for i, key in enumerate(keys[:3]):
        cache.put(key, i, "h")
    assert cache.get(keys[0]) is not None  # keys[0] is now the most recently used
    cache.put(keys[3], 3, "h")
    cache.put(keys[4], 4, "h")
    assert len(cache) == 3
    assert [cache.get(k) is not None for k in keys] == [True, False, False, True, True]


def test_keys_separate_username_from_password_and_differ_per_process():
    cache = auth.CredentialCache(ttl=1, max_entries=1)
    assert cache.key("a\x00b", "c") != cache.key("a", "b\x00c")
    assert cache.key("ab", "c") != cache.key("a", "bc")
    assert cache.key("a", "b") == cache.key("a", "b")
    # A random HMAC key per cache: nothing stable to precompute against.
    assert auth.CredentialCache(ttl=1, max_entries=1).key("a", "b") != cache.key("a", "b")


@pytest.mark.parametrize(("ttl", "size"), [(0, 10), (-1, 10), (10, 0)])
def test_nonsense_bounds_are_refused(ttl, size):
    with pytest.raises(ValueError):
        auth.CredentialCache(ttl=ttl, max_entries=size)


def test_the_process_cache_follows_the_settings(settings):
    settings.FLOWSITE_BASIC_AUTH_CACHE_SECONDS = 60
    settings.FLOWSITE_BASIC_AUTH_CACHE_SIZE = 5
    cache = auth.credential_cache()
    assert (cache.ttl, cache.max_entries) == (60, 5)
    assert auth.credential_cache() is cache
    settings.FLOWSITE_BASIC_AUTH_CACHE_SECONDS = 0
    assert auth.credential_cache() is None
