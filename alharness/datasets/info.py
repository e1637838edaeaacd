"""The one-line summary ``alharness list datasets`` prints for a dataset.

It is the registry entry's description, written when the dataset is
registered, so listing never loads or decodes data: size and classes are
those of the default configuration.
"""

from __future__ import annotations


def _yes_no(v: bool | str) -> str:
    return v if isinstance(v, str) else ("yes" if v else "no")


def describe(size: str, classes: int | str, instances: bool | str, true_clicks: bool | str, text: str) -> str:
    """E.g. ``64 × 64² | 2 classes | instances: yes | true clicks: no | DSB 2018 nuclei``."""
    return (
        f"{size:<18} | {str(classes) + ' classes':<12} | instances: {_yes_no(instances):<22} "
        f"| true clicks: {_yes_no(true_clicks):<3} | {text}"
    )
