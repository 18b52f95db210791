"""llama-cpp-python's low-level library as the engine uses it: the import (with the install
hint), llama.cpp's log routed to a short tail quoted in our errors, the names of its weight
formats, and the model parameters safe on this CPU."""

from __future__ import annotations

import ctypes
import re
import sys
from collections import deque
from contextlib import contextmanager

from slm_tasks.adapters.models import PIP_EXTRA
from slm_tasks.errors import SLMError


class LlamaCppError(SLMError):
    """llama.cpp is missing or refused the model/context."""


def import_llama_cpp():
    try:
        import llama_cpp
        import llama_cpp.llama_cpp as lib
    except ImportError:
        raise LlamaCppError(f"the slm-llamacpp backend needs llama-cpp-python: {PIP_EXTRA}") from None
    return llama_cpp, lib


_LOG_TAIL: deque[str] = deque(maxlen=20)
_LOG_STATE = {"verbose": False, "callback": None}
_CAPTURES: list[list[str]] = []  # open captured_log() blocks


def install_log_callback(llama_cpp, verbose: bool) -> None:
    """Route llama.cpp's log to a short in-memory tail (quoted in our errors); print it
    only with verbose=True."""
    _LOG_STATE["verbose"] = verbose
    if _LOG_STATE["callback"] is not None:
        return

    @llama_cpp.llama_log_callback
    def _callback(level, text, user_data):
        msg = text.decode("utf-8", "replace")
        if msg.strip():
            _LOG_TAIL.append(msg.rstrip())
        for lines in _CAPTURES:
            lines.append(msg)
        if _LOG_STATE["verbose"]:
            sys.stderr.write(msg)

    _LOG_STATE["callback"] = _callback  # keep a reference: ctypes does not
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


@contextmanager
def captured_log():
    """Collect every piece of llama.cpp's log written inside the block (a list of strings;
    the callback must be installed, as the engine does on load)."""
    lines: list[str] = []
    _CAPTURES.append(lines)
    try:
        yield lines
    finally:
        _CAPTURES.remove(lines)


_BUFFER = re.compile(r"\b(KV|compute|output) buffer size\s*=\s*([0-9.]+) MiB")


def buffer_sizes(log: list[str]) -> dict[str, float]:
    """The buffers llama.cpp reports when it creates a context, in MiB: ``kv`` (the KV
    cache; models with sliding-window layers report two caches, summed), ``compute`` (the
    scheduler's work buffer for the largest batch) and ``output`` (logits)."""
    sizes = {"kv": 0.0, "compute": 0.0, "output": 0.0}
    for kind, mib in _BUFFER.findall("".join(log)):
        sizes[kind.lower()] += float(mib)
    return sizes


def log_tail(n: int = 3) -> str:
    lines = list(_LOG_TAIL)[-n:]
    return ("; llama.cpp said: " + " | ".join(lines)) if lines else ""


def ftype_name(lib, ftype: int) -> str | None:
    for name in dir(lib):
        if name.startswith("LLAMA_FTYPE_") and getattr(lib, name) == ftype and name != "LLAMA_FTYPE_GUESSED":
            return name.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_")
    return None


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return any(line.startswith("flags") and " amx_int8" in line for line in f)
    except OSError:
        return False


def model_params(lib):
    """llama.cpp's default model parameters, less the AMX weight repacking: on CPUs with AMX
    (Intel Sapphire Rapids and later) llama.cpp 0.3.36's AMX buffers crash ``llama_decode``
    with SIGSEGV on the stored Q4_1 weights of SmolLM2. The plain CPU kernels compute the same
    model; CPUs without AMX keep llama.cpp's default."""
    params = lib.llama_model_default_params()
    if _cpu_has_amx():
        params.use_extra_bufts = False
    return params
