"""Who may call the server, and how much: API keys, per-key rate limits, daily token quotas."""

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from moss.schema import User
from moss.store import Store


class ApiError(Exception):
    """An error answered as OpenAI's error JSON."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}


@dataclass
class Limits:
    rate_limit: int | None = 60  # requests per minute per key (or per user without auth); None: off
    daily_tokens: int | None = None  # prompt + completion tokens per user per UTC day; None: off


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
        self.rate = RateLimiter()
        self._local = None if auth else store.local_user()

    def authenticate(self, authorization: str | None) -> tuple[User, str]:
        """The calling user and the key they used (the user's name when auth is off)."""
        if not self.auth:
            return self._local, self._local.name
        scheme, _, key = (authorization or "").partition(" ")
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
        if per_minute:
            wait = self.rate.hit(key, per_minute)
            if wait is not None:
                raise ApiError(429, f"rate limit reached: {per_minute} requests per minute",
                               "rate_limit_error", "rate_limit_exceeded",
                               headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        quota = user.daily_tokens if user.daily_tokens is not None else self.limits.daily_tokens
        if quota and self.store.tokens_today(user.id) >= quota:
            now = datetime.now(timezone.utc)
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(),
                                        tzinfo=timezone.utc)
            raise ApiError(429, f"daily token quota of {quota} reached; it resets at midnight UTC",
                           "rate_limit_error", "quota_exceeded",
                           headers={"Retry-After": str(int((midnight - now).total_seconds()) + 1)})
