"""The outline every slm-suite lm-eval model shares; a backend adds only its engine's code.

:class:`SLMBackend` is a ``TemplateLM`` that owns, for every request type:

* tokenisation by lm-eval's own ``TemplateLM`` rules (:func:`scoring.encode_request`),
  truncation to the model's length, rolling windows, and generation bookkeeping (stop
  sequences with the end-of-text string, ``max_gen_toks`` and its one default, sampling
  settings: :mod:`generation`; lm-eval's post-processing of the generated text);
* model arguments checked before anything loads (:mod:`model_args`);
* the plan of the work (requests grouped by shared context, :mod:`scoring`) and its cost
  booking (:meth:`CostMeter.measure` with :func:`cost.task_shares`);
* :meth:`SLMBackend._serve`: the one place every request passes through on its way to the
  engine and back: answers already in the response store (:mod:`store`, keyed by the
  model's identity) are returned from it, the rest are computed and written to it as each
  unit of work finishes (lm-eval's cache hook is fed there too);
* ``get_model_info`` / ``cost_record`` / ``close``.

A backend implements the engine side:

* ``_score_unit(items, work)``: log-likelihoods of (context, continuation) token pairs;
* ``_generate_unit(jobs, work)``: raw generated text of :class:`GenJob` s;
* optionally ``_score_units`` / ``_generation_units`` (how work is cut into units: one
  context group at a time, or waves of many), ``score_length`` and ``_end_of_text``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import postprocess_generated_text

from slm_tasks.adapters import model_spec, progress, scoring, store, store_keys
from slm_tasks.adapters.cost import CostMeter, Work, software_versions, task_shares
from slm_tasks.adapters.generation import GenJob, generation_jobs, generation_plan
from slm_tasks.adapters.model_args import OFF, check_args
from slm_tasks.adapters.model_spec import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default
# Bump when a change here or in scoring.py changes the answer to the same request: stored
# answers of older rules are then not reused.
ANSWER_RULES = 1
Emit = Callable[[int, object, float], None]  # (request index, answer, seconds it took)


@dataclass
class ScoreItem:
    """One distinct (context, continuation) pair of a plan and the requests it answers."""

    context: scoring.Tokens
    continuation: scoring.Tokens
    members: list[int]


class SLMBackend(TemplateLM):
    """Base of ``slm-llamacpp`` and ``slm-vllm``; see the module docstring."""

    backend_name = "slm"  # the lm-eval model name, for messages and progress bars
    meter: CostMeter
    max_gen_toks: int = DEFAULT_MAX_GEN_TOKS
    store: store.ResponseStore | None = None

    # --- model_args: checked before anything loads --------------------------------------
    # name -> kind ("str", "int", "float", "bool" or "any") of the backend's own arguments
    MODEL_ARGS: dict[str, str] = {}

    PASSES_ON: str | None = None  # where names the backend does not know go (vLLM: vllm.LLM)
    # those of a wrapper chosen where the model is built (adapters/make.py: the cluster's)
    WRAPPER_MODEL_ARGS: dict[str, str] = {}

    @classmethod
    def extra_model_args(cls) -> frozenset[str] | None:
        """The names :attr:`PASSES_ON` accepts, or None when they cannot be read here (then
        the engine itself judges them when it loads)."""
        return None

    @classmethod
    def check_model_args(cls, args: Mapping) -> dict:
        """``args`` with each value of a known kind converted; an unknown name or a value of the
        wrong kind is a one-line :class:`~slm_tasks.adapters.model_args.ModelArgsError` (the nearest
        known name, the known ones)."""
        return check_args(
            cls.backend_name, cls.MODEL_ARGS, cls.WRAPPER_MODEL_ARGS, cls.PASSES_ON, cls.extra_model_args, args
        )

    @classmethod
    def resolve(cls, model_args: Mapping) -> ModelSpec:
        """The model these arguments name, as this backend will run it (:mod:`model_spec`):
        checked by :meth:`check_model_args`, resolved once per process."""
        args = cls.check_model_args(model_args)
        return model_spec.memoised(cls.backend_name, args, lambda: cls._resolve(args))

    @classmethod
    def _resolve(cls, args: Mapping) -> ModelSpec:
        """The backend's resolution of checked ``args`` (the file, its digest, the defaults)."""
        raise NotImplementedError

    # --- built by lm-eval from model_args ------------------------------------------------
    @classmethod
    def create_from_arg_obj(cls, arg_dict, additional_config=None):
        args = {**arg_dict, **{k: v for k, v in (additional_config or {}).items() if v is not None}}
        return cls.from_checked_args(cls.check_model_args(args))

    @classmethod
    def from_checked_args(cls, args: dict):
        """The model for checked model arguments: this backend. The registered backends take
        this step from adapters/make.py, which may wrap them (``ray=``: on a cluster)."""
        return cls(**args)

    @classmethod
    def create_from_arg_string(cls, arg_string, additional_config=None):
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    # --- engine side (overridden by each backend) ------------------------------------
    @property
    def score_length(self) -> int:
        """Longest context + continuation the engine scores in one sequence."""
        return self.max_length

    def _start(self, kind: str) -> None:
        """Called before each batch of requests of one type (e.g. to empty a cache)."""

    def _score_units(self, plan: scoring.Plan) -> list[list[ScoreItem]]:
        """Units of scoring work: one context group each (engines that keep a context)."""
        return [[ScoreItem(g.context, c, m) for c, m in zip(g.continuations, g.members)] for g in plan.groups]

    def _score_unit(self, items: list[ScoreItem], work: Work) -> list[tuple[float, bool]]:
        raise NotImplementedError

    def _generation_units(self, jobs: list[GenJob]) -> list[list[GenJob]]:
        """Units of generation work: one job each, sorted by prompt so that neighbours share
        few-shot prefixes."""
        return [[j] for j in sorted(jobs, key=lambda j: j.ids)]

    def _generate_unit(self, jobs: list[GenJob], work: Work) -> list[str]:
        raise NotImplementedError

    def _end_of_text(self) -> str:
        """The end-of-text token's text, a stop sequence of every generation."""
        return self.tok_decode([self.eot_token_id])

    def _close_engine(self) -> None:
        """Release the engine."""

    # --- the pass-through -------------------------------------------------------------
    def _open_store(self, location, identity: Mapping) -> None:
        """The response store for this model (model_args ``store``, else ``$SLM_SUITE_STORE``:
        unset for the default file, a path, or off). ``identity`` names everything of the backend that can change
        an answer; the rules and versions that build requests are added here."""
        if location is None:
            location = os.environ.get("SLM_SUITE_STORE")  # the default for every model of a process
        if location is not None and (location is False or str(location).strip().lower() in OFF):
            return
        soft = software_versions(None, None)
        full = {**identity, "answer_rules": ANSWER_RULES, "lm_eval": soft["lm_eval"], "slm_suite": soft["slm_suite"]}
        path = None if location in (None, "", True) or str(location).lower() in ("on", "true", "yes") else location
        batch = int(os.environ.get("SLM_SUITE_STORE_BATCH") or 1000)  # responses per commit, at most
        self.store = store.ResponseStore.open(path, store_keys.store_key(full), identity=full, commit_every_n=batch)

    def _serve(self, kind: str, requests: Sequence, compute: Callable[[Sequence, Emit, set], None]) -> list:
        """Answer ``requests`` of one type: stored answers first, then
        ``compute(requests, emit, stored)`` runs the engine on the requests not in ``stored``
        (indices answered from the store) and calls ``emit(i, answer, seconds)`` for each as
        soon as its answer is known; it is stored then. ``compute`` sees every request, so
        that the work is planned as in a run that stored nothing."""
        answers: list = [None] * len(requests)
        stored: set[int] = set()
        keys = None
        if self.store is not None and requests:
            keys = [store_keys.request_key(kind, r.args) for r in requests]
            found = self.store.get_many(kind, keys)
            for i, (req, key) in enumerate(zip(requests, keys)):
                if key in found:
                    value, timing = found[key]
                    answers[i] = tuple(value) if kind == "loglikelihood" else value
                    stored.add(i)
                    self.meter.reused(getattr(req, "task_name", None), (timing or {}).get("s"))
                    self.cache_hook.add_partial(kind, req.args, answers[i])
            if stored:
                run = progress.current()
                if run is not None:
                    run.skip(kind, len(stored))
                log.info(
                    "%s %s: %d of %d requests answered from the response store %s",
                    self.backend_name,
                    kind,
                    len(stored),
                    len(requests),
                    self.store.path,
                )

        def emit(i: int, answer, seconds: float) -> None:
            answers[i] = answer
            if keys is not None:
                self.store.put(kind, keys[i], answer, {"s": round(seconds, 6)})
            self.cache_hook.add_partial(kind, requests[i].args, answer)

        if len(stored) < len(requests):
            try:
                compute(requests, emit, stored)
            finally:  # what was computed is kept, whatever stopped the run
                if self.store is not None:
                    self.store.flush()
        return answers

    def _resume_at(self, units: list, index: int) -> None:
        """Called before ``units[index]`` when the units before it were answered from the
        store: an engine whose numbers depend on what its cache holds restores the state a
        run that stored nothing would have had here."""

    def _progress(self, total: int, kind: str, disable: bool, plan: list[progress.Job] | None = None):
        """The run's one bar when ``slm-suite run`` planned it, else a bar for this call."""
        run = progress.current()
        if run is not None:
            return run.phase(kind, total, plan)
        return progress.CallBar(total, disable, f"{self.backend_name} {kind}")

    # --- loglikelihood ------------------------------------------------------------------
    def encode_request(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return scoring.encode_request(context, continuation, self.tok_encode, self.prefix_token_id)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        def compute(reqs, emit, stored):
            pairs = [self.encode_request(*r.args) for r in reqs]
            self._score_pairs(
                pairs, [getattr(r, "task_name", None) for r in reqs], "loglikelihood", disable_tqdm, emit, stored
            )

        return self._serve("loglikelihood", requests, compute)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        """TemplateLM's token-level entry point (lm-eval calls it for already-encoded pairs)."""
        pairs = [(ctx, cont) for _, ctx, cont in requests]
        results: list = [None] * len(pairs)
        self._score_pairs(
            pairs, [None] * len(pairs), "loglikelihood", disable_tqdm, lambda i, r, _s: results.__setitem__(i, r)
        )
        return results

    def _score_pairs(self, pairs, tasks, kind: str, disable_tqdm: bool, emit: Emit, stored=frozenset()) -> None:
        """Score ``pairs`` unit by unit; a unit whose requests are all in ``stored`` is skipped."""
        plan = scoring.plan_groups(pairs, max_length=self.score_length)
        if plan.truncated:
            log.warning(
                "%d of %d requests are longer than the model's %d tokens: their contexts were truncated from the left",
                len(plan.truncated),
                len(pairs),
                self.score_length,
            )
        truncated = set(plan.truncated)
        self._start(kind)
        units = self._score_units(plan)
        skipped = False
        with self._progress(len(pairs) - len(stored), kind, disable_tqdm) as bar:
            for u, unit in enumerate(units):
                members = [i for it in unit for i in it.members]
                if stored and all(i in stored for i in members):
                    skipped = True
                    continue
                if skipped:
                    self._resume_at(units, u)
                    skipped = False
                weights = [len(it.context) + len(it.continuation) for it in unit for _ in it.members]
                t0 = time.perf_counter()
                with self.meter.measure(task_shares([tasks[i] for i in members], weights)) as work:
                    scores = self._score_unit(unit, work)
                    work.requests = len(members)
                    work.truncated_requests = sum(i in truncated for i in members)
                each = (time.perf_counter() - t0) / len(members)
                new = 0
                for it, score in zip(unit, scores):
                    for i in it.members:
                        if i not in stored:  # a unit cut by an interruption: its stored half stays as stored
                            emit(i, score, each)
                            new += 1
                bar.update(new, prompt_tokens=work.prompt_tokens)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        def compute(reqs, emit, stored):
            windows, owners, tasks = scoring.rolling_windows(
                reqs, self.tok_encode, self.prefix_token_id, self.score_length
            )
            left = [0] * len(reqs)
            totals = [0.0] * len(reqs)
            seconds = [0.0] * len(reqs)
            for o in owners:
                left[o] += 1

            def add(w: int, score, s: float) -> None:  # a request is answered once all its windows are
                o = owners[w]
                totals[o] += score[0]
                seconds[o] += s
                left[o] -= 1
                if left[o] == 0:
                    emit(o, totals[o], seconds[o])

            for o, n in enumerate(left):
                if n == 0 and o not in stored:  # no window at all (lm-eval gives at least one)
                    emit(o, 0.0, 0.0)
            done = {w for w, o in enumerate(owners) if o in stored}
            self._score_pairs(windows, tasks, "loglikelihood_rolling", disable_tqdm, add, done)

        return self._serve("loglikelihood_rolling", requests, compute)

    # --- generation ---------------------------------------------------------------------
    def _generation_jobs(self, requests) -> list[GenJob]:
        return generation_jobs(requests, self._end_of_text(), self.max_gen_toks, self.max_length, self._prompt_ids)

    def _prompt_ids(self, context: str) -> list[int]:
        return self.tok_encode(context) or [self.prefix_token_id]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        def compute(reqs, emit, stored):
            jobs = self._generation_jobs(reqs)
            self._start("generate_until")
            units = self._generation_units(jobs)
            skipped = False
            with self._progress(
                len(jobs) - len(stored), "generate_until", disable_tqdm, generation_plan(units, stored)
            ) as bar:
                for u, unit in enumerate(units):
                    if stored and all(j.index in stored for j in unit):
                        skipped = True
                        continue
                    if skipped:
                        self._resume_at(units, u)
                        skipped = False
                    shares = task_shares([j.task for j in unit], [len(j.ids) + j.max_gen for j in unit])
                    t0 = time.perf_counter()
                    with self.meter.measure(shares) as work:
                        texts = self._generate_unit(unit, work)
                        work.requests = len(unit)
                        work.truncated_requests = sum(j.truncated for j in unit)
                    each = (time.perf_counter() - t0) / len(unit)
                    new = [(job, text) for job, text in zip(unit, texts) if job.index not in stored]
                    for job, text in new:
                        emit(job.index, postprocess_generated_text(text, job.until, None), each)
                    bar.update(len(new), prompt_tokens=work.prompt_tokens, out_tokens=work.generated_tokens)

        return self._serve("generate_until", requests, compute)

    # --- cost ---------------------------------------------------------------------------
    def cost_record(self) -> dict:
        """The ``slm-suite.cost/1`` record of everything this model has evaluated so far."""
        return self.meter.record()

    def get_model_info(self) -> dict:
        return {"slm_cost": self.cost_record()}

    def close(self) -> None:
        try:
            self._close_engine()
        finally:
            if self.store is not None:
                self.store.close()
