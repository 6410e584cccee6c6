"""Sandboxed Jinja2 rendering of event ids, filters and run parameters.

A string that is one `{{ expression }}` renders to the expression's native value (a
list stays a list); any other string renders to text. Templates see `body` (the
parsed payload), `headers`, `query`, `route` and, for parameters, `event_id`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from itertools import chain, islice
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateError,
    Undefined,
    UndefinedError,
    nodes,
)
from jinja2.compiler import Frame
from jinja2.nativetypes import NativeCodeGenerator, NativeEnvironment, NativeTemplate
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["TemplateRenderError", "is_truthy", "render_parameters", "render_value"]

TEMPLATE_CACHE_SIZE = 1024


def _concat_native(values: Iterator[Any]) -> Any:
    """Join rendered nodes: a lone node keeps its type, several become text.

    Jinja2's own native concat also runs `ast.literal_eval` on text, which turns a
    body value such as "123" or "None" into an int or None.
    """
    head = list(islice(values, 2))
    if not head:
        return ""
    if len(head) == 1:
        return head[0]
    return "".join(str(value) for value in chain(head, values))


class _NativeCodeGenerator(NativeCodeGenerator):
    """Native code generation that evaluates every expression at render time.

    Jinja2 folds constant expressions such as `{{ [1, 2] }}` into text at compile
    time and relies on `literal_eval` to get the value back, so without that step
    folding would turn them into strings.
    """

    def _output_child_to_const(
        self, node: nodes.Expr, frame: Frame, finalize: Any
    ) -> Any:
        if isinstance(node, nodes.TemplateData):
            return node.as_const(frame.eval_ctx)
        raise nodes.Impossible()


class _SandboxedNativeEnvironment(SandboxedEnvironment, NativeEnvironment):
    """The sandbox's attribute checks with native-type rendering."""

    code_generator_class = _NativeCodeGenerator
    concat = staticmethod(_concat_native)  # type: ignore[assignment]

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Jinja2 looks up `body.items` as an attribute first, which finds the
        # dict method instead of a payload key named "items", "keys" or "get".
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


class _SandboxedNativeTemplate(NativeTemplate):
    environment_class = _SandboxedNativeEnvironment


_SandboxedNativeEnvironment.template_class = _SandboxedNativeTemplate

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


@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def _compile(source: str) -> Template:
    # Compiling was over half of a delivery's CPU time in a profile of the ingest
    # benchmark, and routes reuse the same few sources. A template with a syntax
    # error raises again on each call, because lru_cache keeps only return values.
    return _ENVIRONMENT.from_string(source)


def render_value(source: str, context: Mapping[str, Any], *, name: str) -> Any:
    """Render one template string in the sandbox."""
    try:
        template = _compile(source)
        result = template.render(**context)
        if isinstance(result, Undefined):
            # Native rendering returns a lone undefined value instead of raising.
            str(result)
        return result
    except UndefinedError as exc:
        raise TemplateRenderError(name, f"{exc.message}") from exc
    except TemplateError as exc:
        raise TemplateRenderError(name, str(exc)) from exc
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        IndexError,
        ArithmeticError,
        RecursionError,
    ) as exc:
        raise TemplateRenderError(name, f"{type(exc).__name__}: {exc}") from exc


def render_parameters(
    parameters: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    prefix: str = "parameters",
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
