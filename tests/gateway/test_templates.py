"""Tests for the sandboxed Jinja2 templates behind event ids, filters and parameters."""

from __future__ import annotations

from typing import Any

import pytest

from webhook_gateway.templates import (
    TemplateRenderError,
    is_truthy,
    render_parameters,
    render_value,
)

CONTEXT: dict[str, Any] = {
    "body": {
        "id": "123",
        "count": 3,
        "none_text": "None",
        "list_text": "[1, 2]",
        "items": [{"sku": "A-1"}, {"sku": "B-2"}],
        "text": {"content": " 受台风影响,推迟3天"},
        "nested": {"a": {"b": "deep"}},
    },
    "headers": {"x-github-event": "push", "content-type": "application/json"},
    "query": {"source": "cli"},
    "route": "supplier-dingtalk",
    "event_id": "msg-1",
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ body.id }}", "123"),
        ("{{ body.none_text }}", "None"),
        ("{{ body.list_text }}", "[1, 2]"),
        ("{{ body.count }}", 3),
        ("{{ body.items }}", [{"sku": "A-1"}, {"sku": "B-2"}]),
        ("{{ body.items | map(attribute='sku') | list }}", ["A-1", "B-2"]),
        ("{{ body.text.content }}", " 受台风影响,推迟3天"),
        ("{{ body.nested.a.b }}", "deep"),
        ("{{ headers['x-github-event'] }}", "push"),
        ("{{ query.source }}", "cli"),
        ("{{ route }}", "supplier-dingtalk"),
        ("{{ event_id }}", "msg-1"),
        ("{{ body.id }}-{{ body.count }}", "123-3"),
        ("{{ body.id }}{{ body.count }}", "1233"),
        ("plain text", "plain text"),
        ("", ""),
        ("{{ [1, 2] }}", [1, 2]),
        ("{{ 5 }}", 5),
        ("{{ '07' }}", "07"),
        ("{{ body.missing | default('n/a') }}", "n/a"),
        ("{{ body | tojson }}", None),
    ],
)
def test_render_value_types(source: str, expected: Any) -> None:
    result = render_value(source, CONTEXT, name="t")
    if source == "{{ body | tojson }}":
        assert isinstance(result, str)
        assert '"受台风影响' in result or "受台风影响" in result
        return
    assert result == expected
    assert type(result) is type(expected)


def test_render_missing_key_names_key() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render_value("{{ body.text.title }}", CONTEXT, name="parameters.title")
    assert caught.value.template == "parameters.title"
    assert "'title'" in caught.value.detail


def test_render_missing_top_level() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render_value("{{ payload.id }}", CONTEXT, name="event_id")
    assert "'payload' is undefined" in caught.value.detail


def test_render_missing_inside_text() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render_value("id: {{ body.nope }}", CONTEXT, name="x")
    assert "'nope'" in caught.value.detail


def test_render_missing_index() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render_value("{{ body.items[5].sku }}", CONTEXT, name="x")
    assert caught.value.template == "x"


def test_render_key_shadowing_dict_method() -> None:
    context = {"body": {"keys": "k", "get": "g", "values": [1]}}
    assert render_value("{{ body.keys }}", context, name="x") == "k"
    assert render_value("{{ body.get }}", context, name="x") == "g"
    assert render_value("{{ body['values'] }}", context, name="x") == [1]


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ body.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ body.text.__len__() }}",
    ],
)
def test_render_sandbox_blocks_internals(source: str) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render_value(source, CONTEXT, name="x")
    assert caught.value.template == "x"


@pytest.mark.parametrize(
    "source",
    [
        "{{ body.count / 0 }}",
        "{{ body.id + 1 }}",
        "{{ body.id.nope.deeper }}",
        "{% if %}",
    ],
)
def test_render_runtime_errors(source: str) -> None:
    with pytest.raises(TemplateRenderError):
        render_value(source, CONTEXT, name="x")


def test_render_parameters_nested() -> None:
    parameters = {
        "text": "{{ body.text.content }}",
        "meta": {"route": "{{ route }}", "tags": ["{{ body.id }}", "fixed", 7]},
        "retries": 2,
        "flag": True,
    }
    rendered = render_parameters(parameters, CONTEXT)
    assert rendered == {
        "text": " 受台风影响,推迟3天",
        "meta": {"route": "supplier-dingtalk", "tags": ["123", "fixed", 7]},
        "retries": 2,
        "flag": True,
    }


def test_render_parameters_error_path() -> None:
    parameters = {"meta": {"tags": ["ok", "{{ body.absent }}"]}}
    with pytest.raises(TemplateRenderError) as caught:
        render_parameters(parameters, CONTEXT)
    assert caught.value.template == "parameters.meta.tags[1]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("True", True),
        ("false", False),
        (" False ", False),
        ("0", False),
        ("no", False),
        ("none", False),
        ("", False),
        ("text", True),
        (0, False),
        (1, True),
        (None, False),
        ([], False),
    ],
)
def test_is_truthy(value: Any, expected: bool) -> None:
    assert is_truthy(value) is expected


def test_filter_expression() -> None:
    assert (
        render_value("{{ headers['x-github-event'] == 'push' }}", CONTEXT, name="f")
        is True
    )
    assert render_value("{{ body.count > 5 }}", CONTEXT, name="f") is False
