"""One data loader for every slm_suite task: the Hugging Face hub, or an offline mirror.

Tasks declare ``custom_dataset: !function slm_tasks.data.load`` and name their data in
``dataset_kwargs`` (``hub_id``, ``hub_config``, ``eval_split``, ``fewshot_split``,
``lite_n``, and ``revision`` to pin a hub commit). lm-eval calls the loader as
``load(**metadata, **dataset_kwargs)``, so
``--metadata slm_data_dir=...`` and every model argument arrive here too; unknown keys
are ignored.

A mirror is laid out like the hub: ``<root>/<hub_id>/README.md`` (YAML ``configs:``) and
``<root>/<hub_id>/<config>/<split>.jsonl``, optionally with ``<root>/manifest.json``
(sha256 per file), which is then verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from slm_tasks.errors import SLMError

log = logging.getLogger(__name__)
_WARNED: set[tuple[str, str]] = set()  # (task, mirror) pairs whose missing few-shot split was logged

ENV_VAR = "SLM_DATA_DIR"
LITE_SEED = 1234
FIX = (
    f"set {ENV_VAR} (or --metadata slm_data_dir=...) to a mirror that has it, or unset it to read the Hugging Face hub"
)


class SLMDataError(SLMError):
    """Data for a task cannot be loaded; the message names the file and the fix."""


def data_dir(slm_data_dir: str | os.PathLike | None = None) -> Path | None:
    """The mirror root in force: the explicit argument, else $SLM_DATA_DIR, else None (hub)."""
    value = slm_data_dir or os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else None


def load(
    hub_id: str,
    hub_config: str | None = None,
    eval_split: str | None = None,
    fewshot_split: str | None = None,
    lite_n: int | None = None,
    lite_strata: str | None = None,
    revision: str | None = None,
    slm_data_dir: str | None = None,
    task: str | None = None,
    config_source: str | None = None,
    **_: Any,
):
    """Return a ``datasets.DatasetDict`` for one task.

    ``eval_split`` must exist (else :class:`SLMDataError`). A missing ``fewshot_split``
    in a mirror becomes an empty split, so 0-shot runs; any few-shot request then fails
    with a clear error (see :mod:`slm_tasks.fewshot`), never drawing examples from the
    split being scored. ``lite_n`` keeps a seeded subset of the eval split (stratified by
    the ``lite_strata`` column when given).
    """
    import datasets

    # lm-eval passes the task's YAML path as config_source: name the task in errors.
    task = task or (Path(config_source).stem if config_source else None)
    label = f"task {task} ({hub_id})" if task else hub_id + (f"/{hub_config}" if hub_config else "")
    root = data_dir(slm_data_dir)
    if root is not None:
        dsd = _load_mirror(root, hub_id, hub_config, eval_split, fewshot_split, label)
    else:
        dsd = _load_hub(hub_id, hub_config, label, revision)
        if eval_split and eval_split not in dsd:
            raise SLMDataError(f"{label}: the hub dataset {hub_id} ({hub_config}) has no split '{eval_split}'")
    if lite_n and eval_split:
        dsd[eval_split] = lite_subset(dsd[eval_split], int(lite_n), lite_strata)
    return datasets.DatasetDict(dsd)


def _load_hub(hub_id: str, hub_config: str | None, label: str, revision: str | None = None) -> dict:
    import datasets

    try:
        return dict(datasets.load_dataset(hub_id, hub_config, revision=revision))
    except Exception as exc:  # offline, gated, renamed...
        raise SLMDataError(
            f"{label}: could not load {hub_id} ({hub_config or 'default'}) from the Hugging Face "
            f"hub: {type(exc).__name__}: {exc}. Offline? Set {ENV_VAR} to a mirror folder."
        ) from exc


def _load_mirror(root, hub_id, hub_config, eval_split, fewshot_split, label) -> dict:
    import datasets

    if not root.is_dir():
        raise SLMDataError(f"{label}: {ENV_VAR}={root} is not a folder; {FIX}")
    repo = root / hub_id
    if not repo.is_dir():
        raise SLMDataError(f"{label}: the mirror {root} has no {hub_id}/ folder; {FIX}")
    try:
        files = mirror_files(repo, hub_config)
    except SLMDataError as exc:
        raise SLMDataError(f"{label}: {exc}") from None
    if eval_split and eval_split not in files:
        raise SLMDataError(
            f"{label}: the mirror has no '{eval_split}' split for {hub_id} "
            f"({hub_config or 'default'}): expected {repo / (hub_config or 'default') / (eval_split + '.jsonl')}; {FIX}"
        )
    manifest = _manifest(str(root))
    out = {}
    for split, path in files.items():
        if not path.is_file():
            raise SLMDataError(f"{label}: {path} is listed in {repo / 'README.md'} but missing; {FIX}")
        rel = path.relative_to(root).as_posix()
        _verify(path, manifest.get(rel), label)
        out[split] = datasets.Dataset.from_list(_read_jsonl(str(path), label), features=None)
    if fewshot_split and fewshot_split not in out:
        if (label, str(root)) not in _WARNED:  # once per process: a sweep loads each task per format
            _WARNED.add((label, str(root)))
            log.warning(
                "%s: the mirror %s has no '%s' split of %s (%s): 0-shot runs, few-shot is unavailable",
                label,
                root,
                fewshot_split,
                hub_id,
                hub_config or "default",
            )
        out[fewshot_split] = out[eval_split].select([]) if eval_split else datasets.Dataset.from_list([])
    return out


def missing_fewshot(dataset_kwargs: dict, slm_data_dir: str | os.PathLike | None = None) -> str | None:
    """What the mirror in force lacks of a task's few-shot split, in words, or None.

    ``dataset_kwargs`` as a task declares them (``hub_id``, ``hub_config`` or
    ``hub_configs``, ``fewshot_split``; ``slm_data_dir`` as lm-eval passes metadata). None
    when the split is there, the task takes no examples from a split, or data comes from
    the hub.
    """
    root = data_dir(slm_data_dir or dataset_kwargs.get("slm_data_dir"))
    hub_id, split = dataset_kwargs.get("hub_id"), dataset_kwargs.get("fewshot_split")
    if root is None or not hub_id or not split:
        return None
    repo = root / hub_id
    for cfg in dataset_kwargs.get("hub_configs") or [dataset_kwargs.get("hub_config")]:
        try:
            files = mirror_files(repo, cfg) if repo.is_dir() else {}
        except SLMDataError:
            files = {}
        if split not in files:
            return f"{hub_id}{'/' + cfg if cfg else ''} has no '{split}' split in the mirror {root}"
    return None


def mirror_files(repo: Path, hub_config: str | None) -> dict[str, Path]:
    """Split name -> file for one config, from the repo README's ``configs:`` block."""
    import yaml

    readme = repo / "README.md"
    configs = []
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if text.startswith("---"):
            try:
                configs = (yaml.safe_load(text.split("---", 2)[1]) or {}).get("configs") or []
            except yaml.YAMLError as exc:
                raise SLMDataError(f"{readme}: malformed YAML header ({exc}); fix or re-copy the mirror") from exc
    if configs:
        want = hub_config
        if want is None:
            defaults = [c for c in configs if c.get("default")] or configs[:1]
            want = defaults[0]["config_name"]
        for c in configs:
            if c.get("config_name") == want:
                return {d["split"]: repo / d["path"] for d in c.get("data_files", [])}
        names = ", ".join(c.get("config_name", "?") for c in configs)
        raise SLMDataError(f"{repo}: no config '{want}' in README.md (has: {names}); {FIX}")
    # No README configs: <config>/<split>.jsonl by convention.
    folder = repo / (hub_config or "default")
    return {p.stem: p for p in sorted(folder.glob("*.jsonl"))}


@lru_cache(maxsize=8)
def _manifest(root: str) -> dict[str, str]:
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return {e["path"]: e["sha256"] for e in entries if "path" in e and "sha256" in e}
    except (ValueError, TypeError, KeyError) as exc:
        raise SLMDataError(f"{path}: malformed manifest ({exc}); re-copy the mirror") from exc


@lru_cache(maxsize=512)
def _verified(path: str, size: int, mtime: float, expected: str) -> bool:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == expected


def _verify(path: Path, expected: str | None, label: str) -> None:
    if expected is None:
        return
    st = path.stat()
    if not _verified(str(path), st.st_size, st.st_mtime, expected):
        raise SLMDataError(
            f"{label}: checksum mismatch for {path} (manifest sha256 {expected[:12]}…): the file "
            f"is corrupt or was changed; re-copy it from the mirror's source"
        )


@lru_cache(maxsize=64)
def _read_jsonl_cached(path: str, size: int, mtime: float) -> tuple:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise SLMDataError(f"{path}:{n}: malformed JSON line ({exc.args[0]})") from exc
    return tuple(rows)


def _read_jsonl(path: str, label: str) -> list[dict]:
    st = os.stat(path)
    try:
        return list(_read_jsonl_cached(path, st.st_size, st.st_mtime))
    except SLMDataError as exc:
        raise SLMDataError(f"{label}: {exc}; re-copy the file or {FIX}") from None


def lite_subset(ds, n: int, strata: str | None = None, seed: int = LITE_SEED):
    """A fixed, seeded subset of at most ``n`` rows, in the original order.

    With ``strata`` (a column, e.g. MMLU's ``subject``), rows are allocated to each stratum
    in proportion to its size (largest remainder, at least one each) and drawn within it.
    """
    import numpy as np

    total = len(ds)
    if total <= n:
        return ds
    rng = np.random.default_rng(seed)
    if not strata:
        return ds.select(sorted(rng.choice(total, size=n, replace=False).tolist()))
    keys = ds[strata]
    groups: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    names = sorted(groups)
    quota = {k: max(1, len(groups[k]) * n // total) for k in names}
    # Largest remainder until the budget is spent (never past a stratum's size).
    rema = sorted(names, key=lambda k: -((len(groups[k]) * n) % total))
    i = 0
    while sum(quota.values()) < n and i < 10 * len(names):
        k = rema[i % len(names)]
        if quota[k] < len(groups[k]):
            quota[k] += 1
        i += 1
    picked: list[int] = []
    for k in names:
        idx = groups[k]
        picked += rng.choice(idx, size=min(quota[k], len(idx)), replace=False).tolist()
    return ds.select(sorted(picked))
