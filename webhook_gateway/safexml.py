"""Parse small XML documents (WeCom messages) without DTDs or entities."""

from __future__ import annotations

from typing import Any, NoReturn
from xml.etree import ElementTree
from xml.parsers import expat

__all__ = ["UnsafeXmlError", "parse_xml", "xml_to_dict"]


class UnsafeXmlError(ValueError):
    """The document is not well-formed XML, or it declares a DTD or entities."""


def parse_xml(text: str) -> ElementTree.Element:
    """Parse a document, rejecting DTDs and entity declarations.

    Raises:
        UnsafeXmlError: The document has a DTD or is not well-formed.
    """
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()
    # A DTD is the only place entities are declared, so stopping at its start
    # prevents entity expansion ("billion laughs") and external entities.
    parser.StartDoctypeDeclHandler = _reject_declaration
    parser.EntityDeclHandler = _reject_declaration
    parser.ExternalEntityRefHandler = _reject_declaration
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise UnsafeXmlError(f"invalid XML: {exc}") from None
    return builder.close()


def _reject_declaration(*_args: object) -> NoReturn:
    raise UnsafeXmlError("XML with a DTD or entity declaration is not accepted")


def xml_to_dict(element: ElementTree.Element) -> Any:
    """Turn an element into plain data for templates.

    An element without children becomes its text (CDATA included, "" when empty).
    An element with children becomes a dict by tag, and a tag that repeats becomes a
    list. Attributes are dropped, because WeCom messages carry none.
    """
    children = list(element)
    if not children:
        return element.text or ""
    result: dict[str, Any] = {}
    for child in children:
        value = xml_to_dict(child)
        if child.tag not in result:
            result[child.tag] = value
        elif isinstance(result[child.tag], list):
            result[child.tag].append(value)
        else:
            result[child.tag] = [result[child.tag], value]
    return result
