"""Built-in strategy plugins. Importing this package registers them."""

from strategies import baselines, binary_feedback, madbal, metabox, reference  # noqa: F401
