"""Chat templates rendered the way transformers renders them (lm-eval's HF model calls
``tokenizer.apply_chat_template``), for backends whose template is a Jinja string
(the GGUF key ``tokenizer.chat_template``)."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

import jinja2
from jinja2.exceptions import TemplateError  # noqa: F401  (re-exported for callers)
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class ChatTemplateError(ValueError):
    pass


def _raise(message: str):
    # transformers raises TemplateError here; lm-eval's HF model catches it
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    # the environment transformers uses: sandboxed, trim/lstrip blocks, loop controls
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render(
    template: str,
    messages: list[dict[str, str]],
    add_generation_prompt: bool = True,
    continue_final_message: bool = False,
    **special_tokens,
) -> str:
    """The prompt text for ``messages``. ``continue_final_message`` ends the text right
    after the last message (an assistant turn the model is to continue), as transformers does."""
    text = _compile(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens)
    if continue_final_message:
        final = messages[-1]["content"]
        if final.strip() not in text:
            raise ChatTemplateError("the chat template dropped the final message, so it cannot be continued")
        at = text.rindex(final.strip())
        if text[at : at + len(final.lstrip())] == final:
            text = text[: at + len(final.lstrip())]
        else:  # the template trimmed the message's trailing space
            text = text[: at + len(final.strip())]
    return text
