"""The prompts and phrase banks that ship in this folder, and the one way to render and hash them.

    text(name)              a shipped file's text
    data(name)              a shipped YAML phrase bank, parsed
    check(source, where)    a template compiled, or a ConfigError naming ``where`` and the line
    render(source, **vars)  a template rendered
    digest(source)          the short hash manifests record for a prompt

Every template renders in Jinja2's immutable sandbox with undefined names as errors, the
shipped ones and those users supply (`--user-prompt`) alike, so a template can read the values
it is given and nothing of Python's internals.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from simulate.errors import ConfigError


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
    return ImmutableSandboxedEnvironment(
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
        jinja2.TemplateError: an undefined name, or something the sandbox refuses.
    """
    return template(source).render(**values)


def digest(source: str) -> str:
    """A short, stable hash of a prompt's text, for manifests and plan fingerprints."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]
