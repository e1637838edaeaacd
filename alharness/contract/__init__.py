"""The plugin contract: everything a strategy imports from the harness.

A strategy subclasses :class:`Strategy`, receives a :class:`StrategyContext`
each round (read-only views of the pool and of the labels bought so far,
the model outputs it declared in ``needs``, a price quote) and returns query
values. It never sees an oracle, a mask it has not bought or the test split.
"""

from alharness.contract.params import check_choice, check_fraction, check_int, check_positive
from alharness.contract.queries import (
    HELD_OUT_MASK,
    QUERY_TYPES,
    Boxes,
    ClassPresence,
    FullMask,
    ImageLabels,
    LabelsWithCounts,
    Pixels,
    Query,
    Region,
)
from alharness.contract.strategy import (ARRAY_OUTPUTS, LOOP_NEEDS, NEEDS, ORACLE_NEEDS, ScoreBatch, Strategy,
                                        StrategyContext, within_budget)
from alharness.contract.views import NEGATIVE, POSITIVE, UNKNOWN, LabelStateView, PoolView

__all__ = [
    "ARRAY_OUTPUTS", "Boxes", "ClassPresence", "FullMask", "HELD_OUT_MASK", "ImageLabels", "LabelStateView", "LabelsWithCounts", "LOOP_NEEDS",
    "NEEDS", "NEGATIVE", "ORACLE_NEEDS", "POSITIVE", "Pixels", "PoolView", "QUERY_TYPES", "Query", "Region",
    "ScoreBatch", "Strategy", "StrategyContext", "UNKNOWN", "check_choice", "check_fraction", "check_int", "check_positive",
    "within_budget",
]
