"""Built-in strategy plugins. Importing this package registers them."""

from strategies import baselines  # noqa: F401
