"""HTTP Basic authentication that hashes a password once every few minutes, not on every request.

DRF's ``BasicAuthentication`` calls ``django.contrib.auth.authenticate()`` for every request,
which runs the password hasher: PBKDF2 with Django 5.2's 1,000,000 iterations, about 0.45 s of
CPU. A script starting executions with ``curl -u`` from eight threads got 2.2 starts/s.

:class:`CachedBasicAuthentication` remembers, per process and for
``FLOWSITE_BASIC_AUTH_CACHE_SECONDS``, which credentials it has verified:

* the key is an HMAC of the username and password under a random key made in memory when the
  cache is created, so the plain password is never kept, and the entries cannot be used to
  guess passwords offline;
* the value is the user's id and the *stored password hash* at verification time. A hit loads
  the user by id (one query) and is accepted only if the user still exists, is active, still
  has that username and still has exactly that stored hash. Changing the password (which always
  writes a new salted hash) or deactivating the user therefore applies to the very next
  request, in every process, without any cache invalidation;
* only successes are remembered, and a miss always runs the full ``authenticate()``, so a wrong
  password costs the caller a full hash every time (the cache is no cheap guessing oracle);
* the cache holds at most ``FLOWSITE_BASIC_AUTH_CACHE_SIZE`` entries (least recently used go).

Users without a usable password (authenticated by another backend, e.g. LDAP) are never cached:
the stored hash is what tells a changed password, and they have none.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.signals import setting_changed
from django.dispatch import receiver
from drf_spectacular.authentication import BasicScheme
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication


class _Entry(NamedTuple):
    user_pk: Any
    password_hash: str
    expires_at: float


class CredentialCache:
    """A bounded, thread-safe map from (username, password) to the user they verified as.

    ``ttl`` seconds after :meth:`put` an entry is gone (a hit does not extend it); beyond
    ``max_entries`` the least recently used entry is dropped. ``clock`` is a monotonic clock.
    """

    def __init__(
        self, *, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("ttl must be > 0 and max_entries >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, username: str, password: str) -> bytes:
        """The cache key for these credentials (never stored with the password itself)."""
        user = username.encode("utf-8", "surrogatepass")
        # Length-prefixed, so that no other (username, password) split gives the same bytes.
        message = len(user).to_bytes(8, "big") + user + password.encode("utf-8", "surrogatepass")
        return hmac.digest(self._secret, message, "sha256")

    def get(self, key: bytes) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: bytes, user_pk: Any, password_hash: str) -> None:
        with self._lock:
            self._entries[key] = _Entry(user_pk, password_hash, self._clock() + self.ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, key: bytes) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


_cache: CredentialCache | None = None
_cache_lock = threading.Lock()


def credential_cache() -> CredentialCache | None:
    """This process's cache, made on first use from the settings; ``None`` when
    ``FLOWSITE_BASIC_AUTH_CACHE_SECONDS`` is 0 (every request then hashes, as DRF does)."""
    global _cache
    ttl = settings.FLOWSITE_BASIC_AUTH_CACHE_SECONDS
    if ttl <= 0:
        return None
    with _cache_lock:
        if _cache is None:
            _cache = CredentialCache(ttl=ttl, max_entries=settings.FLOWSITE_BASIC_AUTH_CACHE_SIZE)
        return _cache


@receiver(setting_changed)
def _forget_cache_on_settings_change(*, setting: str, **kwargs: Any) -> None:
    # Tests change the TTL or size with override_settings: start over with the new values.
    global _cache
    if setting.startswith("FLOWSITE_BASIC_AUTH_CACHE"):
        with _cache_lock:
            _cache = None


class CachedBasicAuthentication(BasicAuthentication):
    """DRF's HTTP Basic authentication with :class:`CredentialCache` in front of the password
    hasher. Same answers as ``BasicAuthentication`` (401 ``Unauthenticated`` for bad
    credentials), same ``WWW-Authenticate`` realm."""

    def authenticate_credentials(self, userid: str, password: str, request=None):
        if "\x00" in userid:
            # No username contains NUL, and PostgreSQL refuses the string with an error
            # (a 500) instead of finding no such user.
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        cache = credential_cache()
        if cache is None:
            return super().authenticate_credentials(userid, password, request)
        key = cache.key(userid, password)
        entry = cache.get(key)
        if entry is not None:
            user = _user_if_unchanged(entry, userid)
            if user is not None:
                return (user, None)
            # Changed since (password, username, deactivated or deleted): the full check below
            # gives the authoritative answer, exactly as if the entry had never been there.
            cache.discard(key)
        user, auth = super().authenticate_credentials(userid, password, request)
        # Read the hash after authenticate(): it may have just re-hashed the password with the
        # current hasher settings and saved it.
        if user.has_usable_password():
            cache.put(key, user.pk, user.password)
        return (user, auth)


def _user_if_unchanged(entry: _Entry, userid: str):
    """The cached user, if it still exists, is active, has this username and the very stored
    password hash it had when the credentials were verified; else ``None``."""
    user = get_user_model()._default_manager.filter(pk=entry.user_pk).first()
    if user is None or not user.is_active or user.get_username() != userid:
        return None
    if not hmac.compare_digest(
        (user.password or "").encode("utf-8", "surrogatepass"),
        entry.password_hash.encode("utf-8", "surrogatepass"),
    ):
        return None
    return user


class CachedBasicScheme(BasicScheme):
    """The OpenAPI schema documents :class:`CachedBasicAuthentication` as plain HTTP Basic
    (``basicAuth``), as it did DRF's class (registered with drf-spectacular on import)."""

    target_class = CachedBasicAuthentication
