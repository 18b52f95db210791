"""One stage of the device check in its own process (the parent never touches CUDA, so
every child may start a vLLM engine): reads the spec device_check.py wrote, runs the stage,
writes its record ``rec-<kind>.json`` to the work folder, also when the stage fails.

    python -P benchmarks/gpu/check_child.py WORK/spec-<kind>.json
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE))  # run with python -P: neither the cwd nor this folder comes first
import common  # noqa: E402


def child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work"])
    rec_path = work / f"rec-{spec['kind']}.json"
    rec: dict = {"kind": spec["kind"], "phases": {}}

    def save():
        common.write_json(rec_path, rec)

    try:
        if spec["kind"] == "logprobs":
            from logprob_stage import logprob_child

            logprob_child(spec, rec, save)
        else:
            from eval_stage import eval_child

            eval_child(spec, rec, save)
    except BaseException as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc()[-4000:]
        save()
        raise
    save()
    sys.stdout.flush()
    os._exit(0)  # vLLM's engine can abort the interpreter at exit (exit 134); the record is saved


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
