"""Who may call the server, and how much: API keys (header or the page's cookie), per-key rate
limits, daily token quotas; and who may reach it at all: the Host allow-list against DNS
rebinding, the Origin check against cross-site requests, the admin API only for admins."""

import ipaddress
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from moss.server.errors import ApiError
from moss.store import Store
from moss.store.schema import User

COOKIE = "moss_key"  # the page's API key: HttpOnly, so no script in the page can read it
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Limits:
    rate_limit: int | None = 60  # chat completions per minute per key (or per user without auth); None: off
    daily_tokens: int | None = None  # prompt + completion tokens per user per UTC day; None: off
    api_rate_limit: int | None = None  # every other /v1 request (conversations, search, feedback), per key
    user_share: float = 1.0  # the most of the batch slots plus queue places one user may hold


@dataclass
class Exposure:
    """Where the server listens and which names it answers to."""
    host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()  # more names the server may be reached by (--allowed-host)

    @property
    def public(self) -> bool:
        """Whether other machines can reach it: any address but loopback."""
        return not (self.host == "localhost" or is_loopback(self.host.strip("[]")))

    def hosts(self) -> set[str] | None:
        """The Host header names accepted; None accepts any (a wildcard address with no names
        given: an --auth server reached by whatever name its operator gives it)."""
        if self.host in WILDCARDS and not self.allowed_hosts:
            return None
        names = {*LOCAL_NAMES, *(h.lower() for h in self.allowed_hosts)}
        if self.host not in WILDCARDS:
            names.add(self.host.lower().strip("[]"))
        return names

    def refusal(self, method: str, headers: dict[str, str]) -> str | None:
        """Why a request is refused before anything else looks at it, or None.
        DNS rebinding sends a foreign Host; a cross-site form or script sends a foreign Origin."""
        hosts = self.hosts()
        host = _hostname(headers.get("host", ""))
        if hosts is not None and host not in hosts:
            return (f"the host name '{host}' is not one this server answers to "
                    f"(start it with --allowed-host {host or 'NAME'} if it should)")
        origin = headers.get("origin")
        if origin is not None and method in UNSAFE_METHODS \
                and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
            return f"a page at {origin} may not change anything on this server (only its own page may)"
        return None


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _hostname(netloc: str) -> str:
    """'Example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


class RateLimiter:
    """A sliding one-minute window of request times per key."""

    def __init__(self):
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, key: str, per_minute: int) -> float | None:
        """Record a request; None if allowed, else seconds until one is allowed."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - 60:
                hits.popleft()
            if len(hits) >= per_minute:
                return 60 - (now - hits[0])
            hits.append(now)
            return None


class Access:
    def __init__(self, store: Store, auth: bool, limits: Limits):
        self.store, self.auth, self.limits = store, auth, limits
        self.rate, self.api_rate = RateLimiter(), RateLimiter()
        self._local = None if auth else store.local_user()

    def authenticate(self, authorization: str | None, cookie: str | None = None) -> tuple[User, str]:
        """The calling user and the key they used (the user's name when auth is off): from the
        Authorization header, else from the page's cookie."""
        if not self.auth:
            return self._local, self._local.name
        scheme, _, key = (authorization or "").partition(" ")
        if not authorization and cookie:
            scheme, key = "bearer", cookie
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "missing API key: send 'Authorization: Bearer YOUR_KEY' "
                                "(create one with `moss users add NAME`)", "invalid_request_error",
                           "invalid_api_key")
        user = self.store.user_for_key(key.strip())
        if user is None:
            raise ApiError(401, "invalid or disabled API key", "invalid_request_error",
                           "invalid_api_key")
        return user, key.strip()

    def admit(self, user: User, key: str) -> None:
        """Raise 429 when this key is over its rate limit or this user over today's tokens."""
        per_minute = user.rate_limit if user.rate_limit is not None else self.limits.rate_limit
        self._limit(self.rate, key, per_minute, "")
        quota = user.daily_tokens if user.daily_tokens is not None else self.limits.daily_tokens
        if quota and self.store.tokens_today(user.id) >= quota:
            now = datetime.now(timezone.utc)
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(),
                                        tzinfo=timezone.utc)
            raise ApiError(429, f"daily token quota of {quota} reached; it resets at midnight UTC",
                           "rate_limit_error", "quota_exceeded",
                           headers={"Retry-After": str(int((midnight - now).total_seconds()) + 1)})

    def admit_call(self, key: str) -> None:
        """Raise 429 when this key is over the limit for the rest of the API (listing, search,
        feedback): cheap calls, but each one is a database query."""
        self._limit(self.api_rate, key, self.limits.api_rate_limit, " for this API")

    @staticmethod
    def _limit(limiter: RateLimiter, key: str, per_minute: int | None, what: str) -> None:
        if not per_minute:
            return
        wait = limiter.hit(key, per_minute)
        if wait is not None:
            raise ApiError(429, f"rate limit reached: {per_minute} requests per minute{what}",
                           "rate_limit_error", "rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, int(wait + 0.999)))})
