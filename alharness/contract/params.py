"""Parameter checks for a plugin's ``__init__``: each raises ConfigError with
one line naming the plugin, the parameter, what is valid and what was given,
so that a bad benchmark file fails at load time, before anything runs."""

from __future__ import annotations

from typing import Any, Iterable

from alharness.errors import ConfigError


def check_int(who: str, name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{who}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_positive(who: str, name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a float > 0 (or >= 0 with ``allow_zero``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"{who}: {name} must be a number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def check_fraction(who: str, name: str, value: Any, *, include_zero: bool = True) -> float:
    """``value`` as a float in [0, 1] (or (0, 1] without ``include_zero``)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (0.0 <= value <= 1.0) or (not include_zero and value == 0):
        raise ConfigError(f"{who}: {name} must be in {'[0, 1]' if include_zero else '(0, 1]'}, got {value!r}")
    return float(value)


def check_choice(who: str, name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` as one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{who}: unknown {name} {value!r}; valid choices: {', '.join(choices)}")
    return value
