"""Estimator parameters given as JSON text (``attnmoe fit --params``, ``bench tabular``)."""

from __future__ import annotations

import json
from typing import Any


def parse_estimator_params(
    text: str | None, option: str, estimator: type, grid: bool = False
) -> dict[str, Any]:
    """A JSON object of ``estimator``'s parameters, checked against its own.

    Names must be parameters of ``estimator``; values must have the type of the
    defaults (a number for a number, text for text; None passes).

    Parameters
    ----------
    text : str or None
        The JSON object; None or empty gives ``{}``.
    option : str
        The option's name for error messages (e.g. ``"--params"``).
    estimator : type
        An estimator class whose ``get_params()`` lists its parameters.
    grid : bool
        Each value is a list of candidates (a search grid), each checked.

    Returns
    -------
    dict
        The parsed parameters.

    Raises
    ------
    ValueError
        On invalid JSON, a non-object, an unknown name or a value of the wrong type.
    """
    if not text:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{option} is not valid JSON: {err}") from err
    if not isinstance(params, dict):
        raise ValueError(f"{option} must be a JSON object, e.g. '{{\"epochs\": 100}}'")
    unknown = sorted(set(params) - set(estimator().get_params()))
    if unknown:
        raise ValueError(
            f"{option}: {unknown} are not parameters of {estimator.__name__} "
            f"(see help(attnmoe.tabular.{estimator.__name__}))"
        )
    defaults = estimator().get_params()
    for name, value in params.items():
        default = defaults[name]
        candidates = value if grid and isinstance(value, list) else [value]
        for v in candidates:
            number = isinstance(default, (int, float)) and not isinstance(default, bool)
            flag = name == "verbose" and isinstance(v, bool)  # verbose=True, as sklearn's
            wrong = (
                number
                and not flag
                and (isinstance(v, bool) or not isinstance(v, (int, float, type(None))))
            ) or (isinstance(default, str) and not isinstance(v, str))
            if wrong:
                kind = "a number" if number else "text"
                raise ValueError(f"{option}: {name} must be {kind}, got {v!r}")
    return params


__all__ = ["parse_estimator_params"]
