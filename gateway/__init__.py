"""The API gateway: routes ``/api/<service>/...`` to the services (in process or over HTTP),
checks tokens, limits rates, stamps request ids and serves the OpenAPI front door."""

from gateway.app import Gateway, create_gateway
from gateway.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter, from_env
from gateway.routing import DEFAULT_PUBLIC_ROUTES
from gateway.synced_limiter import SyncedRateLimiter

__all__ = ["DEFAULT_PUBLIC_ROUTES", "Gateway", "MemoryRateLimiter", "RateLimiter",
           "RedisRateLimiter", "SyncedRateLimiter", "create_gateway", "from_env"]
