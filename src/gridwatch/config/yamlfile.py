"""YAML loading that remembers the line of every value and rejects duplicate keys.

Whatever the text, loading ends in a value or in problems, within the limits of
:mod:`gridwatch.config.limits`: the composer checks nesting, size and self-referring aliases
before it recurses, and this module, not PyYAML's constructor, walks the composed nodes, so
that it counts what aliases and merge keys (``<<``) expand to and refuses any tag that is not
a standard YAML one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from gridwatch.config.files import size_text
from gridwatch.config.limits import (
    MAX_DEPTH,
    MAX_EXPANDED_CHARS,
    MAX_NODES,
    MAX_NUMBER_CHARS,
)
from gridwatch.config.problems import Path, Problem, shorten

_YAML = "tag:yaml.org,2002:"
_MAP, _SEQ, _MERGE = _YAML + "map", _YAML + "seq", _YAML + "merge"
_SCALARS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp", "binary")}
_NUMBERS = {_YAML + "int", _YAML + "float"}
_AS_TEXT = {_MERGE, _YAML + "value"}  # `<<` and `=` where they are no keys: just text
_STANDARD = {_YAML + t for t in ("omap", "pairs", "set", "yaml")} | _SCALARS | _AS_TEXT
_STANDARD |= {_MAP, _SEQ}
_INVALID = object()  # a value that has been reported as a problem


class LocatedYaml:
    """A parsed YAML document and the 1-based line of each value, by path."""

    def __init__(self, value: Any, lines: dict[Path, int]) -> None:
        self.value = value
        self.lines = lines

    def line(self, path: Path) -> int | None:
        """The line of the value at ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def load_yaml(text: str, problems: list[Problem]) -> LocatedYaml:
    """Parse one YAML document; syntax errors, duplicate keys and limits become problems."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: only a caller's str can hold one
        line = text.count("\n", 0, exc.start) + 1
        problems.append(Problem((), f"not valid Unicode text (character {exc.start})", line))
        return LocatedYaml(None, {})
    loader: _Loader | None = None
    try:
        loader = _LOADER(text)
        node = loader.get_single_node()
        builder = _Builder(loader, problems)
        value = None if node is None else builder.value(node, (), 1)
        return LocatedYaml(value, builder.lines)
    except _Refused as exc:
        problems.append(Problem(exc.path, exc.message, exc.line))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem((), f"invalid YAML: {exc}", _line(mark)))
    except (ValueError, OverflowError) as exc:  # PyYAML's scanner on "\UFFFFFFFF"
        mark = loader.get_mark() if isinstance(loader, Reader) else None
        problems.append(Problem((), f"invalid YAML: {exc}", _line(mark)))
    return LocatedYaml(None, {})


def _line(mark: Any) -> int | None:
    """The 1-based line of a PyYAML or libyaml mark."""
    return mark.line + 1 if mark is not None else None


class _Refused(Exception):
    """Input past a limit: loading stops at it, with this one problem."""

    def __init__(self, message: str, mark: Any, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.line = _line(mark)
        self.path = path


class _LimitedComposer(Composer):
    """PyYAML's composer, which recurses: each node is checked before it recurses further."""

    def __init__(self) -> None:
        super().__init__()
        self.composed = 0
        self.depth = 0
        self.open_anchors: set[str] = set()  # of the nodes being composed

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        self.composed += 1
        if self.composed > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} values", event.start_mark)
        if isinstance(event, AliasEvent):
            if event.anchor in self.open_anchors:
                message = f"alias *{shorten(event.anchor)} refers to the value that contains it"
                raise _Refused(message, event.start_mark)
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        anchor = event.anchor
        if anchor is not None:
            self.open_anchors.add(anchor)
        self.depth += 1
        node = super().compose_node(parent, index)
        self.depth -= 1  # no try/finally: after an exception the composer is dropped
        self.open_anchors.discard(anchor)
        return node


class _Loader(_LimitedComposer, SafeConstructor, Resolver):
    """Composer, constructor and resolver; a subclass brings the parser."""

    def __init__(self) -> None:
        _LimitedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


class _PythonLoader(_Loader, Reader, Scanner, Parser):
    """With PyYAML's own parser, written in Python."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Loader.__init__(self)


_LOADER: Callable[[str], _Loader] = _PythonLoader
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _LibyamlLoader(_Loader, CParser):
        """With libyaml's parser (much faster); composing stays in Python, in _Loader."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _Loader.__init__(self)

    _LOADER = _LibyamlLoader


class _Builder:
    """Python values and lines from composed nodes, counting what aliases expand to."""

    def __init__(self, loader: _Loader, problems: list[Problem]) -> None:
        self.loader = loader
        self.problems = problems
        self.lines: dict[Path, int] = {}
        self.visited = 0
        self.chars = 0

    def value(self, node: Node, path: Path, depth: int) -> Any:
        """The value of ``node``, found at ``path``, ``depth`` levels down."""
        self._visit(node, path, depth)
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                return self._wrong_tag(node, path, "sequence")
            return [self.value(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        value = self._scalar(node, path)
        return None if value is _INVALID else value

    def _visit(self, node: Node, path: Path, depth: int, count: int = 1) -> None:
        self.visited += count
        if self.visited > MAX_NODES:
            message = f"aliases expand the document to more than {MAX_NODES} values"
            raise _Refused(message, node.start_mark, path)
        if depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", node.start_mark, path)

    def _mapping(self, node: MappingNode, path: Path, depth: int) -> Any:
        if node.tag != _MAP:
            return self._wrong_tag(node, path, "mapping")
        own, merged = self._pairs(node, path, depth)
        own_keys = [(self._key(k, path, depth), k, v) for k, v in own]
        overridden = {key for key, _, _ in own_keys}
        entries: list[tuple[Any, Node, Node]] = []
        seen: set[Any] = set()
        for key_node, value_node in merged:  # the earlier a merged mapping, the more it counts
            key = self._key(key_node, path, depth)
            if key not in overridden and key not in seen and key is not _INVALID:
                seen.add(key)
                entries.append((key, key_node, value_node))
        for key, key_node, value_node in own_keys:
            if key is _INVALID:
                continue
            if key in seen:
                line = key_node.start_mark.line + 1
                self.problems.append(Problem((*path, str(key)), "duplicate key", line))
                continue
            seen.add(key)
            entries.append((key, key_node, value_node))
        result: dict[Any, Any] = {}
        for key, key_node, value_node in entries:
            child = (*path, str(key))
            result[key] = self.value(value_node, child, depth + 1)
            self.lines[child] = key_node.start_mark.line + 1  # point at the key, not its value
        return result

    def _pairs(
        self, node: MappingNode, path: Path, depth: int
    ) -> tuple[list[tuple[Node, Node]], list[tuple[Node, Node]]]:
        """The mapping's own key/value pairs, and those that its merge keys bring in."""
        own: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                own.append((key_node, value_node))
                continue
            if isinstance(value_node, SequenceNode) and value_node.tag != _SEQ:
                self._wrong_tag(value_node, path, "sequence")
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            if not all(isinstance(s, MappingNode) and s.tag == _MAP for s in sources):
                line = key_node.start_mark.line + 1
                message = "<< takes a mapping or a list of mappings"
                self.problems.append(Problem(path, message, line))
                continue
            for source in sources:
                self._visit(source, path, depth + 1)
                source_own, source_merged = self._pairs(source, path, depth + 1)
                self._visit(source, path, depth + 1, len(source_own) + len(source_merged))
                merged += source_own + source_merged
        return own, merged

    def _key(self, node: Node, path: Path, depth: int) -> Any:
        self._visit(node, path, depth + 1)
        if not isinstance(node, ScalarNode):
            line = node.start_mark.line + 1
            message = "a key must be a single value, not a list or mapping"
            self.problems.append(Problem(path, message, line))
            return _INVALID
        return self._scalar(node, path)

    def _scalar(self, node: Node, path: Path) -> Any:
        text: str = node.value
        self.chars += len(text)
        if self.chars > MAX_EXPANDED_CHARS:
            limit = size_text(MAX_EXPANDED_CHARS)
            message = f"aliases expand the document to more than {limit} of text"
            raise _Refused(message, node.start_mark, path)
        if node.tag in _AS_TEXT:
            return text
        if node.tag not in _SCALARS:
            self._wrong_tag(node, path, "scalar")
            return _INVALID
        line = node.start_mark.line + 1
        if node.tag in _NUMBERS and len(text) > MAX_NUMBER_CHARS:
            message = f"a number longer than {MAX_NUMBER_CHARS} characters"
            self.problems.append(Problem(path, message, line))
            return _INVALID
        try:
            return self.loader.construct_object(node)
        # What int(), float(), base64 and datetime() raise on text that only looks right.
        except (yaml.YAMLError, ValueError, ArithmeticError, LookupError, AttributeError):
            message = f"{shorten(text)!r} is not a valid {_shown(node.tag)}"
            self.problems.append(Problem(path, message, line))
            return _INVALID

    def _wrong_tag(self, node: Node, path: Path, kind: str) -> None:
        tag = _shown(node.tag)
        message = f"tag {tag} cannot be used on a {kind}" if node.tag in _STANDARD else None
        self.problems.append(
            Problem(path, message or f"unknown tag {tag}", node.start_mark.line + 1)
        )


def _shown(tag: str) -> str:
    return shorten("!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag)
