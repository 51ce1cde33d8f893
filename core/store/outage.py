"""Which errors mean "the database is not there right now" rather than "this
request is wrong": the edge answers them UNAVAILABLE (retry later) and the
ledger poster does not blame the requests it was posting for them."""

from __future__ import annotations

import asyncpg

# Class 08 (connection exception), 57P01-57P03 (admin or crash shutdown,
# cannot connect now), 53300 (too many connections), and the client side's
# closed pool or lost connection (InterfaceError, OSError: refused, reset).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.ConnectionDoesNotExistError,
    OSError,  # ConnectionError and TimeoutError are OSErrors
)


# asyncpg's InternalClientError is mostly "a bug in the client", which must stay
# INTERNAL. Three of its texts are the connection's state after the server ended
# the session, seen here when the server's FATAL notice (idle session or
# transaction timeout, pg_terminate_backend) arrived while the connection was
# idle and the close was not yet processed: the next statement finds the
# protocol "not connected", "failed", or mid an operation that will never end.
def _lost_session(exc: BaseException) -> bool:
    if not isinstance(exc, asyncpg.InternalClientError):
        return False
    text = str(exc)
    return (
        text == "not connected"
        or 'protocol is in the "failed" state' in text
        or ("another operation (" in text and text.endswith(") is in progress"))
    )


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc`, or what caused it, says the database cannot be reached."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, _UNAVAILABLE) or _lost_session(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
