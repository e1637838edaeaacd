"""Built-in strategy plugins. Importing this package registers them."""

from strategies import baselines, binary_feedback, metabox, reference  # noqa: F401
