"""Device check, stage 4 (its own child process): slm-vllm's log-likelihoods of stage 3's
requests against a plain transformers forward that computes logits only at the scored
positions; |delta| per request, the same pick per document, tokens/s of both.

Run by check_child.py from a spec file that device_check.py writes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import common


def logprob_child(spec: dict, rec: dict, save) -> None:
    """A plain torch forward: hidden states for every token, logits only at scored positions."""
    import numpy as np

    t = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM

    rec["phases"]["import_s"] = round(time.perf_counter() - t, 2)
    rows = [json.loads(x) for x in (Path(spec["work"]) / "requests-slm-vllm.jsonl").read_text().splitlines() if x]
    cpu = spec["cpu"]
    device = "cpu" if cpu else "cuda"
    dtype = torch.float32 if cpu else torch.bfloat16
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=dtype).to(device).eval()
    rec["phases"]["load_s"] = round(time.perf_counter() - t, 2)
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    order = sorted(range(len(rows)), key=lambda i: -(len(rows[i]["ctx"]) + len(rows[i]["cont"])))
    batch = 16 if cpu else 128
    lls = [0.0] * len(rows)
    greedy = [True] * len(rows)
    tokens_in = tokens_padded = scored = 0

    def run_all() -> float:
        nonlocal tokens_in, tokens_padded, scored
        tokens_in = tokens_padded = scored = 0
        if not cpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in range(0, len(order), batch):
                idx = order[b : b + batch]
                seqs = [rows[i]["ctx"] + rows[i]["cont"][:-1] for i in idx]
                width = max(len(s) for s in seqs)
                ids = torch.zeros((len(idx), width), dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for j, s in enumerate(seqs):
                    ids[j, : len(s)] = torch.tensor(s)
                    mask[j, : len(s)] = 1
                hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
                sel_b, sel_t, tgt = [], [], []
                for j, i in enumerate(idx):
                    n_ctx, cont = len(rows[i]["ctx"]), rows[i]["cont"]
                    sel_b += [j] * len(cont)
                    sel_t += list(range(n_ctx - 1, n_ctx - 1 + len(cont)))
                    tgt += cont
                logits = head(hidden[sel_b, sel_t]).float()
                logp = torch.log_softmax(logits, dim=-1)
                tgt_t = torch.tensor(tgt, device=device)
                picked = logp.gather(1, tgt_t[:, None])[:, 0].cpu().numpy()
                top = (logits.argmax(dim=-1) == tgt_t).cpu().numpy()
                k = 0
                for i in idx:
                    n = len(rows[i]["cont"])
                    lls[i] = float(picked[k : k + n].sum())
                    greedy[i] = bool(top[k : k + n].all())
                    k += n
                tokens_in += sum(len(s) for s in seqs)
                tokens_padded += width * len(idx)
                scored += len(tgt)
        if not cpu:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    first = run_all()  # includes kernel selection and warm-up
    second = run_all()
    delta = np.abs(np.array(lls) - np.array([r["ll"] for r in rows]))
    picks_torch, picks_vllm = {}, {}
    for r, ll in zip(rows, lls):
        key = (r["task"], r["doc_id"])
        picks_torch.setdefault(key, []).append((r["idx"], ll))
        picks_vllm.setdefault(key, []).append((r["idx"], r["ll"]))
    same = sum(
        max(picks_torch[k], key=lambda x: x[1])[0] == max(picks_vllm[k], key=lambda x: x[1])[0] for k in picks_torch
    )
    rec.update(
        {
            "requests": len(rows),
            "docs": len(picks_torch),
            "dtype": str(dtype),
            "device": device,
            "batch": batch,
            "torch_forward_s": {"first": round(first, 3), "second": round(second, 3)},
            "tokens_in": tokens_in,
            "tokens_padded": tokens_padded,
            "scored_positions": scored,
            "torch_tok_s": round(tokens_in / second, 1) if second else None,
            "ll_abs_delta": {
                "max": float(delta.max()),
                "mean": float(delta.mean()),
                "p99": float(np.quantile(delta, 0.99)),
            },
            "same_pick": same / len(picks_torch),
            "same_greedy": float(np.mean([g == r["greedy"] for g, r in zip(greedy, rows)])),
            "status": "ok",
        }
    )
    vllm_rec = common.read_json(Path(spec["work"]) / "rec-slm-vllm.json") or {}
    cost = (vllm_rec.get("cost_full") or {}).get("tasks") or {}
    comp = sum((cost.get(t) or {}).get("prompt_tokens") or 0 for t in common.FULL_SLM)
    wall = sum((cost.get(t) or {}).get("wall_s") or 0 for t in common.FULL_SLM)
    rec["slm_vllm"] = {
        "scoring_s": (vllm_rec.get("full") or {}).get("scoring_s"),
        "prompt_tokens_computed": comp,
        "engine_wall_s": wall,
        "computed_tok_s": round(comp / wall, 1) if wall else None,
        "request_tokens_tok_s": round(tokens_in / wall, 1) if wall else None,
    }
    save()


# === the markdown summary ================================================================
