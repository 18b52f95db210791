"""Backend-neutral scoring core shared by the llama.cpp and vLLM adapters.

It turns lm-eval loglikelihood requests into work for an engine that can evaluate one
context once and several continuations over it:

* :func:`encode_request` applies lm-eval's ``TemplateLM`` tokenisation rules (its own
  ``_encode_pair``; an empty context becomes the prefix token);
* :func:`truncate_left` applies the HF model's rule for inputs longer than the model;
* :func:`plan_groups` removes duplicate requests, groups the rest by (truncated) context
  and orders the groups by context tokens, so that neighbours share the longest prefixes
  (fixed few-shot examples) and an engine can keep that prefix's cache;
* :func:`logprob_rows` / :func:`score_tokens` compute log-softmax in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from lm_eval.api.model import TemplateLM

Tokens = tuple[int, ...]


class _Encoder:
    """What ``TemplateLM._encode_pair`` reads of its model: a causal tokenizer."""

    backend = "causal"

    def __init__(self, tok_encode: Callable[..., list[int]]):
        self.tok_encode = tok_encode


def encode_request(
    context: str, continuation: str, tok_encode: Callable[..., list[int]], prefix_token_id: int
) -> tuple[list[int], list[int]]:
    """Token ids for one loglikelihood request, exactly as ``TemplateLM.loglikelihood``:
    lm-eval's own ``_encode_pair`` (trailing spaces move to the continuation; the pair is
    encoded whole and split), and for an empty context the prefix token (which lm-eval
    writes inline in ``loglikelihood``)."""
    if context == "":
        cont = tok_encode(continuation, add_special_tokens=False)
        if cont and cont[0] == prefix_token_id:
            return cont[:1], cont[1:]
        return [prefix_token_id], cont
    return TemplateLM._encode_pair(_Encoder(tok_encode), context, continuation)


def truncate_left(context: Sequence[int], continuation: Sequence[int], max_length: int) -> tuple[Tokens, Tokens, bool]:
    """Fit context+continuation into ``max_length`` model inputs, like lm-eval's HF model.

    The model sees ``(context + continuation)[-(max_length + 1):][:-1]``: the context loses
    tokens from the left, the continuation is scored in full. A continuation longer than
    the model keeps its last ``max_length`` tokens (HF asserts instead). Returns
    (context, continuation, truncated).
    """
    ctx, cont = tuple(context), tuple(continuation)
    if len(ctx) + len(cont) <= max_length + 1:
        return ctx, cont, False
    if len(cont) > max_length:
        whole = ctx + cont
        cont = cont[-max_length:]
        ctx = whole[-(max_length + 1) : -max_length]
        return ctx, cont, True
    keep = max_length + 1 - len(cont)
    return ctx[-keep:], cont, True


@dataclass
class ContextGroup:
    """One context and the distinct continuations scored after it."""

    context: Tokens
    continuations: list[Tokens] = field(default_factory=list)
    # members[i]: indices of the original requests whose answer is continuations[i]
    members: list[list[int]] = field(default_factory=list)


@dataclass
class Plan:
    groups: list[ContextGroup]
    truncated: list[int]  # indices of requests whose context was cut
    n_requests: int

    @property
    def n_unique(self) -> int:
        return sum(len(g.continuations) for g in self.groups)


def plan_groups(requests: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int | None = None) -> Plan:
    """Dedupe and group (context_ids, continuation_ids) pairs; groups sorted by context,
    continuations sorted within a group (so the plan depends only on the set of requests).

    Sorting token tuples puts contexts with common prefixes next to each other, so an
    engine that keeps the previous context's cache re-evaluates only the differing suffix.
    """
    by_ctx: dict[Tokens, ContextGroup] = {}
    slot: dict[tuple[Tokens, Tokens], tuple[ContextGroup, int]] = {}
    truncated: list[int] = []
    for i, (ctx, cont) in enumerate(requests):
        if max_length is not None:
            ctx, cont, cut = truncate_left(ctx, cont, max_length)
            if cut:
                truncated.append(i)
        else:
            ctx, cont = tuple(ctx), tuple(cont)
        key = (ctx, cont)
        if key in slot:
            group, j = slot[key]
            group.members[j].append(i)
            continue
        group = by_ctx.setdefault(ctx, ContextGroup(ctx))
        group.continuations.append(cont)
        group.members.append([i])
        slot[key] = (group, len(group.continuations) - 1)
    groups = sorted(by_ctx.values(), key=lambda g: g.context)
    for g in groups:  # a canonical order: results must not depend on the order of requests
        order = sorted(range(len(g.continuations)), key=lambda j: g.continuations[j])
        g.continuations = [g.continuations[j] for j in order]
        g.members = [g.members[j] for j in order]
    return Plan(groups=groups, truncated=truncated, n_requests=len(requests))


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def pack_waves(lengths: Sequence[int], max_parallel: int, token_budget: int) -> list[list[int]]:
    """Split continuations (by index) into waves of at most ``max_parallel`` sequences and
    ``token_budget`` tokens each (a single longer continuation gets a wave of its own)."""
    waves: list[list[int]] = []
    cur: list[int] = []
    used = 0
    for i, n in enumerate(lengths):
        if cur and (len(cur) >= max_parallel or used + n > token_budget):
            waves.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += n
    if cur:
        waves.append(cur)
    return waves


def logprob_rows(logits: np.ndarray) -> np.ndarray:
    """log-softmax over the last axis, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def score_tokens(logits: np.ndarray, targets: Sequence[int]) -> tuple[float, bool]:
    """Sum of log-softmax(logits[i])[targets[i]] in float64, and whether every target is
    the argmax of its row (lm-eval's ``is_greedy``). ``logits``: (len(targets), vocab)."""
    rows = np.asarray(logits, dtype=np.float64).reshape(len(targets), -1)
    idx = np.arange(len(targets))
    tgt = np.asarray(targets, dtype=np.int64)
    m = rows.max(axis=1)
    lse = m + np.log(np.exp(rows - m[:, None]).sum(axis=1))
    total = float((rows[idx, tgt] - lse).sum())
    greedy = bool((rows.argmax(axis=1) == tgt).all())
    return total, greedy


def rolling_windows(requests, tok_encode, prefix_token: int, max_len: int):
    """lm-eval's disjoint rolling windows for ``loglikelihood_rolling`` requests.

    Returns ``(windows, owners, task_names)``: (context, continuation) token pairs, the
    index of the request each window belongs to, and that request's task name.
    """
    from lm_eval import utils as lm_utils

    windows, owners, tasks = [], [], []
    for idx, req in enumerate(requests):
        (text,) = req.args
        for ctx, cont in map(
            lm_utils.make_disjoint_window,
            lm_utils.get_rolling_token_windows(
                token_list=tok_encode(text), prefix_token=prefix_token, max_seq_len=max_len, context_len=1
            ),
        ):
            windows.append((ctx, cont))
            owners.append(idx)
            tasks.append(getattr(req, "task_name", None))
    return windows, owners, tasks


def kept_prefix(previous: Sequence[int], tokens: Sequence[int]) -> int:
    """How much of ``tokens`` a prefix cache holding ``previous`` keeps: the common prefix,
    but never the last token (its logits are needed)."""
    return min(common_prefix_len(previous, tokens), len(tokens) - 1)


def replay_chain(prefixes: Sequence[Sequence[int]], index: int) -> list[int]:
    """Which earlier prefixes an engine that keeps its previous prefix's cache must evaluate
    again, in order, to hold before ``prefixes[index]`` exactly the cache it would hold had
    it evaluated every prefix before it (each prefix evaluated after its predecessor).

    Position p of that cache was computed by the last prefix before ``index`` that did not
    keep it from its own predecessor; evaluating just those, oldest first, computes every
    position in the same batch as the full sequence of evaluations did (each keeps from the
    previous one in this list exactly what it kept then), so the numbers are identical
    where an engine's arithmetic depends on how tokens were batched.
    """
    if index <= 0:
        return []
    level = kept_prefix(prefixes[index - 1], prefixes[index])
    chain = []
    i = index - 1
    while level > 0 and i >= 0:
        keep = kept_prefix(prefixes[i - 1], prefixes[i]) if i > 0 else 0
        if keep < level:  # prefixes[i] computed positions [keep, level) that are still held
            chain.append(i)
            level = keep
        i -= 1
    return chain[::-1]
