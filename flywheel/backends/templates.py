"""Prompt templates: Jinja2 files under the domain's directory that users edit.

A template renders one prompt. Lines `[system]` and `[user]` start the messages; text
before any marker is a user message. Templates run in Jinja2's sandbox with
`StrictUndefined`, so a variable the template names but the stage does not supply is an
error naming the file and line, not an empty string. Model output only ever enters a
template as a variable's value, never as template source. The version of a template is
the hash of its bytes: editing it changes every cache key that used it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

from flywheel.config import ConfigError

_MARKER = re.compile(r"^\[(system|user|assistant)\]\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Template:
    path: Path
    version: str
    _template: jinja2.Template

    def check(self, supplied: set[str] | frozenset[str]) -> None:
        """Refuse, before any call, a template that names a variable its stage does not supply."""
        env = SandboxedEnvironment()
        names = jinja2.meta.find_undeclared_variables(env.parse(self.path.read_text(encoding="utf-8")))
        unknown = sorted(names - set(supplied))
        if unknown:
            raise ConfigError(f"{self.path}: undefined variable {unknown[0]!r} (the stage supplies "
                              f"{', '.join(sorted(supplied))})")

    def render(self, **values) -> tuple[tuple[str, str], ...]:
        """The messages, as (role, content) pairs."""
        try:
            text = self._template.render(**values)
        except jinja2.UndefinedError as exc:
            line = _error_line(exc)
            raise ConfigError(f"{self.path}{line}: {exc.message} (the stage supplies {', '.join(sorted(values))})") \
                from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{self.path}: {' '.join(str(exc).split())}") from None
        return split_messages(text)


def _error_line(exc: BaseException) -> str:
    tb = exc.__traceback__
    line = None
    while tb is not None:  # the deepest frame that is the template's own code
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f": line {line}" if line else ""


def split_messages(text: str) -> tuple[tuple[str, str], ...]:
    parts = _MARKER.split(text)
    messages = []
    if parts[0].strip():
        messages.append(("user", parts[0].strip()))
    for role, content in zip(parts[1::2], parts[2::2]):
        messages.append((role, content.strip()))
    if not messages:
        raise ConfigError("template rendered to an empty prompt")
    return tuple(messages)


def load(path: Path) -> Template:
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: template not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: template is not UTF-8 text") from None
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    try:
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}: {exc.message}") from None
    return Template(path, hashlib.sha256(source.encode("utf-8")).hexdigest()[:16], template)


def conversation(messages: list[dict]) -> str:
    """Turns before a request (a log record's system prompt and earlier turns) as text for
    a template's `conversation` ("" for none)."""
    return "\n".join(f"{m.get('role')}: {m.get('content') or ''}".strip() for m in messages)


def read_text(path: Path) -> str:
    """A rubric or other plain file shown to a model (empty when absent)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
