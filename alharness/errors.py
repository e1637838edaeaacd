"""Exception types. Every user-facing failure is one of these, with a message
that names what was wrong and what would have been valid."""


class AlharnessError(Exception):
    """Base class of alharness errors."""


class ConfigError(AlharnessError):
    """A benchmark file, spec or plugin parameter is invalid."""


class PluginError(AlharnessError):
    """A plugin is broken: bad registration, bad output, failed import."""


class QueryRefused(AlharnessError):
    """The oracle refused a batch; nothing was charged for it."""

    def __init__(self, strategy: str, query: object, reason: str):
        self.strategy = strategy
        self.query = query
        self.reason = reason
        super().__init__(f"oracle refused batch from strategy {strategy!r}: {reason} (query: {query!r})")


class OverdraftError(QueryRefused):
    """The batch would spend more than the budget allows."""


class DuplicateQueryError(QueryRefused):
    """The batch repeats a query already answered (or repeats itself)."""


class MalformedQueryError(QueryRefused):
    """The batch holds something that is not a valid query for this pool."""


class ResultsError(AlharnessError):
    """A results file or directory is unreadable or inconsistent."""
