"""Model arguments checked before anything loads: the kinds a backend declares, the values
converted to them, and a one-line error for a name or value the backend cannot take."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping

from slm_tasks.errors import SLMError

OFF = ("off", "no", "none", "false", "0")
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
# model_args every lm-eval model receives from lm-eval itself (simple_evaluate's
# additional_config; --trust_remote_code)
GENERIC_MODEL_ARGS = {"device": "any", "batch_size": "any", "max_batch_size": "any", "trust_remote_code": "bool"}


class ModelArgsError(SLMError):
    """A model argument the backend does not know, or a value it cannot take."""


def as_bool(key: str, value) -> bool:
    """A yes/no model argument: a bool, 0/1 or true/false/yes/no/on/off; anything else is refused
    (a value read as true by mistake changes what is computed without a word)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise ModelArgsError(f"model argument {key}={value!r} is not true or false: pass {key}=true or {key}=false")


def as_int(key: str, value) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ModelArgsError(f"model argument {key}={value!r} is not a whole number: pass e.g. {key}=2") from None


def as_float(key: str, value) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise ModelArgsError(f"model argument {key}={value!r} is not a number: pass e.g. {key}=0.5") from None


_CONVERT = {"bool": as_bool, "int": as_int, "float": as_float}


def check_args(
    backend_name: str,
    own: Mapping[str, str],
    wrapper: Mapping[str, str],
    passes_on: str | None,
    extra_names: Callable[[], frozenset[str] | None],
    args: Mapping,
) -> dict:
    """``args`` with each value of a known kind converted. ``own`` / ``wrapper``: name -> kind of
    the backend's arguments and its wrapper's; names neither knows go to ``passes_on`` if it
    accepts them (``extra_names()``; None: unreadable here, the engine judges them when it loads)."""
    known = {**GENERIC_MODEL_ARGS, **wrapper, **own}
    unknown = [k for k in args if k not in known]
    extra = extra_names() if unknown and passes_on else None
    if unknown and passes_on:
        unknown = [] if extra is None else [k for k in unknown if k not in extra]
    if unknown:
        key = unknown[0]
        near = difflib.get_close_matches(key, [*known, *sorted(extra or ())], n=1, cutoff=0.6)
        hint = f"did you mean '{near[0]}'? " if near else ""
        also = f"; any name of {passes_on}" if passes_on else ""
        raise ModelArgsError(
            f"{backend_name}: unknown model argument '{key}'; {hint}known: "
            f"{', '.join(own)}{also}; lm-eval's own: {', '.join(GENERIC_MODEL_ARGS)}"
        )
    out = dict(args)
    for key, value in args.items():
        convert = _CONVERT.get(known.get(key, "any"))
        if convert is not None and value is not None:
            out[key] = convert(key, value)
    return out
