"""Sandboxed Jinja2 rendering of event ids, filters and run parameters.

A string that is one `{{ expression }}` renders to the expression's native value (a
list stays a list); any other string renders to text. Templates see `body` (the
parsed payload), `headers`, `query`, `route` and, for parameters, `event_id`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, UndefinedError
from jinja2.nativetypes import NativeEnvironment
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["TemplateRenderError", "render_parameters", "render_value", "is_truthy"]


class _SandboxedNativeEnvironment(SandboxedEnvironment, NativeEnvironment):
    """The sandbox's attribute checks with native-type rendering."""


_ENVIRONMENT = _SandboxedNativeEnvironment(undefined=StrictUndefined, autoescape=False)
_ENVIRONMENT.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)


class TemplateRenderError(Exception):
    """A template failed to render.

    Attributes:
        template: Which template failed, for example `parameters.text`.
        detail: What was wrong, such as the missing key.
    """

    def __init__(self, template: str, detail: str) -> None:
        super().__init__(f"template {template!r} failed: {detail}")
        self.template = template
        self.detail = detail


def render_value(source: str, context: Mapping[str, Any], *, name: str) -> Any:
    """Render one template string in the sandbox."""
    try:
        template = _ENVIRONMENT.from_string(source)
        result = template.render(**context)
        if isinstance(result, Undefined):
            # Native rendering returns a lone undefined value instead of raising.
            str(result)
        return result
    except UndefinedError as exc:
        raise TemplateRenderError(name, f"{exc.message}") from exc
    except TemplateError as exc:
        raise TemplateRenderError(name, str(exc)) from exc
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise TemplateRenderError(name, f"{type(exc).__name__}: {exc}") from exc


def render_parameters(
    parameters: Mapping[str, Any], context: Mapping[str, Any], *, prefix: str = "parameters"
) -> dict[str, Any]:
    """Render every string in a parameters mapping, recursing into lists and dicts."""
    return {
        key: _render_tree(value, context, name=f"{prefix}.{key}")
        for key, value in parameters.items()
    }


def _render_tree(value: Any, context: Mapping[str, Any], *, name: str) -> Any:
    if isinstance(value, str):
        return render_value(value, context, name=name)
    if isinstance(value, Mapping):
        return {
            key: _render_tree(item, context, name=f"{name}.{key}")
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _render_tree(item, context, name=f"{name}[{index}]")
            for index, item in enumerate(value)
        ]
    return value


def is_truthy(value: Any) -> bool:
    """Interpret a rendered filter; the strings 'false', '0' and '' are false."""
    if isinstance(value, str):
        return value.strip().lower() not in {"", "false", "0", "no", "none"}
    return bool(value)
