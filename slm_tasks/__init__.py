"""slm-suite: small-language-model evaluation on lm-evaluation-harness.

Kept import-free: ``slm_suite.pth`` imports ``slm_tasks.activation`` at every interpreter
start, which imports this module first.
"""

__version__ = "0.1.0"
