"""alharness: simulate annotation strategies for image segmentation under a budget."""

from alharness.errors import (
    AlharnessError,
    ConfigError,
    DuplicateQueryError,
    MalformedQueryError,
    OverdraftError,
    PluginError,
    QueryRefused,
    ResultsError,
)
from alharness.contract.queries import Boxes, ClassPresence, FullMask, ImageLabels, LabelsWithCounts, Pixels, Query, Region
from alharness.registry import register_cost, register_dataset, register_model, register_strategy
from alharness.contract.strategy import Strategy, StrategyContext, within_budget

__version__ = "0.1.0"

__all__ = [
    "AlharnessError",
    "Boxes",
    "ClassPresence",
    "LabelsWithCounts",
    "Pixels",
    "Region",
    "ConfigError",
    "DuplicateQueryError",
    "FullMask",
    "ImageLabels",
    "MalformedQueryError",
    "OverdraftError",
    "PluginError",
    "Query",
    "QueryRefused",
    "ResultsError",
    "Strategy",
    "StrategyContext",
    "register_cost",
    "register_dataset",
    "register_model",
    "register_strategy",
    "within_budget",
    "__version__",
]
