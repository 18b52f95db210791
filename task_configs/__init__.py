"""The suite's task YAMLs: lm-eval indexes this folder (the ``lm_eval.tasks`` entry point)."""
