"""The prompts and phrase banks that ship in this folder, and the one way to render and hash them.

    text(name)              a shipped file's text
    data(name)              a shipped YAML phrase bank, parsed
    check(source, where)    a template compiled, or a ConfigError naming ``where`` and the line
    render(source, **vars)  a template rendered
    digest(source)          the short hash manifests record for a prompt

Every template renders in Jinja2's immutable sandbox with undefined names as errors, the
shipped ones and those users supply (`--user-prompt`) alike, so a template can read the values
it is given and nothing of Python's internals; `sandbox()` also bounds what a template can make
(`'a' * 10**9`, `range(10**8)` and the like are template errors, not gigabytes).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Any

import jinja2
import yaml
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from simulate.errors import ConfigError

MAX_RENDERED_CHARS = 200_000
"""The most text one template may produce or one operation in it may build."""


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with bounded sizes: ranges (Jinja's own `MAX_RANGE`) and the
    repetition and power operators, which would otherwise build gigabyte strings and numbers."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise SecurityError(f"the exponent {right} is too large for a template")
        if operator == "*":
            sized, times = (left, right) if isinstance(right, int) else (right, left)
            repeated = isinstance(sized, str | list | tuple) and isinstance(times, int)
            if repeated and len(sized) * times > MAX_RENDERED_CHARS:
                raise SecurityError(
                    f"repeating {len(sized)} items {times} times is too large for a template"
                )
        return super().call_binop(context, operator, left, right)


@functools.cache
def text(name: str) -> str:
    """The text of a shipped prompt or phrase bank, e.g. `user.md.j2`."""
    return resources.files(__name__).joinpath(name).read_text("utf-8")


@functools.cache
def data(name: str) -> Any:
    """A shipped YAML phrase bank, parsed (e.g. `agenda.yaml`)."""
    return yaml.safe_load(text(name))


@functools.cache
def _environment() -> jinja2.Environment:
    return LimitedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@functools.cache
def template(source: str) -> jinja2.Template:
    """``source`` compiled once per text (compiling costs ~10 ms, rendering well under 1 ms)."""
    return _environment().from_string(source)


def check(source: str, where: str) -> str:
    """``source`` when it compiles; a ConfigError naming ``where`` and the line otherwise."""
    try:
        template(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{where}:{exc.lineno}: template syntax error: {exc.message}") from exc
    return source


def render(source: str, **values: Any) -> str:
    """``source`` rendered with ``values`` in the sandbox.

    Raises:
        jinja2.TemplateError: an undefined name, something the sandbox refuses, or text longer
            than `MAX_RENDERED_CHARS`.
    """
    try:
        text = template(source).render(**values)
    except OverflowError as exc:  # Jinja's sandbox refuses ranges past MAX_RANGE this way
        raise SecurityError(str(exc)) from None
    if len(text) > MAX_RENDERED_CHARS:
        raise SecurityError(f"the template made {len(text):,} characters")
    return text


def digest(source: str) -> str:
    """A short, stable hash of a prompt's text, for manifests and plan fingerprints."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]
