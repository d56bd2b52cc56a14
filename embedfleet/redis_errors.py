"""Counting every failed Redis operation of a client in ``embedfleet_redis_errors_total``.

The count is taken where redis-py talks to the server (its connection class), so every command,
pipeline and Lua script of the job store is covered without wrapping each call site, in the gateway
and in every worker alike. The connection class the URL chose (TCP, TLS, Unix socket) is kept: a
subclass of it is swapped into the client's pool before the first connection is made.
"""

from __future__ import annotations

import functools
from typing import Any

import redis
from redis.exceptions import NoScriptError

from embedfleet.metrics import REDIS_ERRORS

_COUNTED = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)


def _counting(method: Any) -> Any:
    """Count an error once, at the outermost wrapped call of a connection: errors redis-py raises and
    handles itself inside another step (the connect handshake probing for optional features, a
    connect inside a send) are not failures anyone sees."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("_embedfleet_in_call"):
            return method(self, *args, **kwargs)
        self._embedfleet_in_call = True
        try:
            return method(self, *args, **kwargs)
        except NoScriptError:
            raise  # redis-py loads the script and retries: not a failure anyone should see
        except _COUNTED as exc:
            REDIS_ERRORS.labels(type(exc).__name__).inc()
            raise
        finally:
            self._embedfleet_in_call = False

    return wrapper


@functools.cache
def _counting_class(base: type[Any]) -> type[Any]:
    """``base`` with its connect/send/read counting errors (one class per base, made once)."""
    overrides = {name: _counting(getattr(base, name)) for name in ("connect", "send_packed_command", "read_response")}
    return type(f"ErrorCounting{base.__name__}", (base,), overrides)


def count_errors(client: redis.Redis) -> redis.Redis:
    """Make ``client`` count its failed operations; returns it. Call before its first command."""
    pool = client.connection_pool
    pool.connection_class = _counting_class(pool.connection_class)
    return client
