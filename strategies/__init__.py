"""Built-in strategy plugins. Importing this package registers them."""

from strategies import baselines, binary_feedback, full_or_weak, madbal, mask_guided, metabox  # noqa: F401
