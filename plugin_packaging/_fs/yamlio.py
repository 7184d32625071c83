"""Reading YAML that people wrote, safely and with errors that point at the line.

Manifests are small; anything big, deeply aliased or not UTF-8 is refused before it can cost
memory or time (a "billion laughs" alias bomb is cheap for PyYAML to build as shared references,
but expensive for everything that walks the result afterwards).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from plugin_packaging._fs.files import (
    MANIFEST,
    InputKind,
    InputTooLarge,
    NotRegularFile,
    input_problem,
    read_input,
)
from plugin_packaging.errors import PackagingError

#: A manifest is a few KiB; a megabyte is already absurd (`files.MANIFEST`).
MAX_MANIFEST_BYTES = MANIFEST.limit
#: Manifests need no anchors at all; a handful is tolerated, a bomb is not.
MAX_ALIASES = 64


def read_text(path: Path, *, kind: InputKind = MANIFEST) -> str:
    """Read a small UTF-8 text file, refusing huge, unreadable or binary files clearly.

    Only a regular file (or a symlink to one) of at most `kind.limit` bytes is read: a named pipe
    would block the open until a writer came, and a device such as /dev/zero would never end.
    """
    try:
        data = read_input(path, kind)
    except NotRegularFile as exc:
        if exc.is_directory:
            raise PackagingError(
                "not-a-file", "is a directory, expected a text file", path
            ) from None
        raise PackagingError(
            "not-a-file", str(exc), path, hint="replace it with the text file it should be"
        ) from None
    except InputTooLarge as exc:
        raise PackagingError(
            "manifest-too-large" if kind is MANIFEST else "file-too-large",
            str(exc) + ("; a plugin manifest is a few lines of YAML" if kind is MANIFEST else ""),
            path,
        ) from None
    except PermissionError:
        raise PackagingError(
            "unreadable",
            "cannot be read (permission denied)",
            path,
            hint="check the file's permissions",
        ) from None
    except OSError as exc:
        raise PackagingError("unreadable", input_problem(exc), path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackagingError(
            "manifest-not-utf8",
            f"is not UTF-8 text (bad byte at offset {exc.start})",
            path,
            hint="save the file as UTF-8",
        ) from None


#: Characters PyYAML's two parsers read differently: its pure-Python scanner refuses tabs inside
#: plain values that libyaml accepts, and libyaml treats a byte-order mark at the start of any
#: line, and NEL, LS and PS line breaks, in its own way. Text holding one is read the careful way.
_PARSERS_DIFFER = ("\t", "\x85", "\u2028", "\u2029", "\ufeff")


@functools.lru_cache(maxsize=1)
def libyaml_safe_loader() -> Any:
    """`yaml.CSafeLoader` when PyYAML was built with a libyaml that limits nesting, else None.

    libyaml 0.2.6 refuses more than 1000 nested levels; with an older one PyYAML's compiled
    composer would recurse on the C stack for every `[` of a hostile file until the process died.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        return None
    try:
        from yaml import _yaml

        version = tuple(_yaml.get_version())
    except (ImportError, AttributeError, TypeError):
        return None
    if version < (0, 2, 6):
        return None

    class _UniqueKeysCLoader(loader):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            # Any duplicate sends the text to the careful loader, which names its place.
            if _first_duplicate_key(self, node) is not None:
                raise ValueError("duplicate key")
            return super().construct_mapping(node, deep)

    return _UniqueKeysCLoader


def _first_duplicate_key(loader: Any, node: Any) -> tuple[Any, Any, Any] | None:
    """(key, first key node, repeated key node) of the first key a mapping node repeats.

    PyYAML keeps the last of two equal keys without a word; StreamKit's parser (serde_yaml)
    refuses the file, so a duplicate here is an error rather than a silent choice. Keys merged in
    with `<<` may be overridden, as YAML intends.
    """
    import yaml

    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:
            continue  # an unhashable key fails in PyYAML's own constructor, with its place
        if first is not key_node:
            return key, first, key_node
    return None


def libyaml_reads_as_pyyaml(text: str) -> bool:
    """True when libyaml may parse `text` in place of PyYAML's pure-Python parser.

    Without an anchor (`&`) there can be no alias, so no alias bomb. Without the characters the
    two parsers disagree on they build the same data from anything a manifest holds, and from
    everything `manifest.yaml_entry` writes (tests/test_yamlio.py compares them). What remains is
    libyaml accepting a few oddities PyYAML refuses (a block scalar's `|` directly followed by
    `#`) or reads otherwise (a bare `!` tag: '' rather than null); an error is still always
    PyYAML's, see `load_yaml`.
    """
    return "&" not in text and not any(character in text for character in _PARSERS_DIFFER)


def load_yaml(text: str, path: Path) -> Any:
    """`yaml.safe_load` with an alias limit; syntax errors name the line and column.

    libyaml (`libyaml_safe_loader`) reads most manifests, three times faster than PyYAML's
    pure-Python parser; text it cannot read, or may read differently, goes to the pure-Python
    parser, whose messages name the character and place of a mistake better than libyaml's.
    """
    fast = libyaml_safe_loader()
    if fast is not None and libyaml_reads_as_pyyaml(text):
        import yaml

        try:
            data = yaml.load(text, Loader=fast)  # CSafeLoader: the safe loader, in C
        except Exception:
            pass
        else:
            return refuse_deep(data, path, code="manifest-too-deep", what="a manifest")
    return refuse_deep(_careful_load(text, path), path, code="manifest-too-deep", what="a manifest")


#: Lists and mappings nested deeper than this are refused as soon as a document is parsed. The
#: server's parsers (serde_json, serde_yaml) stop at 128 levels; and a value nested ~990 deep
#: that Python's parser just managed to build would make every later recursive walk (rendering,
#: hashing, copying) fail with a RecursionError.
MAX_NESTING = 128


def refuse_deep(data: Any, path: Path, *, code: str, what: str, hint: str | None = None) -> Any:
    """`data`, unless it nests lists and mappings deeper than `MAX_NESTING` (then an error).

    Iterative, and bounded even for the shared and self-referencing values YAML anchors build:
    a value is walked again only when reached at a greater depth, and never beyond the limit.
    """
    deepest: dict[int, int] = {}
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_NESTING:
            raise PackagingError(
                code,
                f"nests lists and mappings more than {MAX_NESTING} levels deep; no real "
                f"{what.removeprefix('a ').removeprefix('an ')} does",
                path,
                hint=hint,
            )
        if deepest.get(id(value), 0) >= depth:
            continue
        deepest[id(value)] = depth
        pending.extend((child, depth + 1) for child in children)
    return data


def _careful_load(text: str, path: Path) -> Any:
    """PyYAML's pure-Python safe loader, with an alias limit and marked errors."""
    import yaml

    class _BoundedLoader(yaml.SafeLoader):
        aliases_seen = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases_seen += 1
                if self.aliases_seen > MAX_ALIASES:
                    raise PackagingError(
                        "manifest-alias-bomb",
                        f"uses more than {MAX_ALIASES} YAML aliases",
                        path,
                        hint="write the values out; manifests do not need anchors",
                    )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            duplicate = _first_duplicate_key(self, node)
            if duplicate is not None:
                key, first, again = duplicate
                raise PackagingError(
                    "yaml-duplicate-key",
                    f"line {again.start_mark.line + 1}, column {again.start_mark.column + 1}: the "
                    f"key {key!r} appears twice (first at line {first.start_mark.line + 1})",
                    path,
                    hint="keep one of them: StreamKit's YAML parser refuses duplicate keys",
                )
            return super().construct_mapping(node, deep)

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            # A value that matches a tag's pattern but is no such value (the date 2024-13-01,
            # `!!float x`) fails in Python's own constructors; give it the node's place.
            try:
                return super().construct_object(node, deep)
            except (ValueError, OverflowError) as exc:
                kind = node.tag.rsplit(":", 1)[-1]
                shown = ""
                if isinstance(node, yaml.ScalarNode):
                    value = node.value if len(node.value) <= 60 else node.value[:57] + "..."
                    shown = f"{value!r} "
                problem = number_problem(exc) if isinstance(exc, ValueError) else str(exc)
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{shown}is not a valid {kind} ({problem}); quote it if it is text",
                    node.start_mark,
                ) from None

    try:
        # The reader checks every character as it is built: a NUL or another unprintable
        # character already fails here.
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, path) from None
    try:
        return loader.get_single_data()
    except PackagingError:
        raise
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, path) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise PackagingError(
            "manifest-invalid-yaml",
            f"is not valid YAML: {problem}",
            path,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise PackagingError("manifest-invalid-yaml", f"is not valid YAML: {exc}", path) from None
    except RecursionError:
        raise PackagingError(
            "manifest-too-deep", "nests too deeply to be a manifest", path
        ) from None
    finally:
        loader.dispose()


def _reader_error(exc: Any, text: str, path: Path) -> PackagingError:
    """A character YAML does not allow (NUL, most control characters), placed by line and column."""
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    return PackagingError(
        "manifest-invalid-yaml",
        f"is not valid YAML: the character U+{exc.character:04X} is not allowed in YAML",
        path,
        hint="remove the control character (YAML allows tabs, line breaks and printable text)",
        line=line,
        column=column,
    )


def load_json(text: str, path: Path, *, code: str, what: str, hint: str | None = None) -> Any:
    """`json.loads` for a small file people or tools wrote; errors name the line, and nesting
    deep enough to exhaust the parser is refused as `what` ("a manifest", "a settings file")."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PackagingError(
            code,
            f"is not valid JSON: {exc.msg}",
            path,
            hint=hint,
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise PackagingError(
            code, f"is not valid JSON: {number_problem(exc)}", path, hint=hint
        ) from None
    except RecursionError:
        raise PackagingError(code, f"nests too deeply to be {what}", path, hint=hint) from None
    return refuse_deep(data, path, code=code, what=what, hint=hint)


def number_problem(error: ValueError) -> str:
    """`int()`'s complaint about a number too long to convert, in a few words."""
    text = str(error)
    if "Exceeds the limit" in text and "digits" in text:
        return "a number has more digits than any real value (Python converts at most 4300)"
    return text


def load_yaml_file(path: Path) -> Any:
    """Read and parse one YAML file (see `read_text` and `load_yaml`)."""
    return load_yaml(read_text(path), path)


def placed_at_key(error: PackagingError) -> PackagingError:
    """`error` with the line and column of its top-level `key` in its YAML file, when it names
    one; for messages (`path:line:col`) and annotations on the line of a pull request's file.

    Only errors are placed, so the file is read again here rather than every manifest being
    parsed into marked nodes on the quick path. Any trouble finding the key leaves the error
    as it was: the place is a help, the error is the message.
    """
    if error.key is None or error.line is not None or error.path is None:
        return error
    if error.path.suffix not in (".yml", ".yaml"):
        return error
    try:
        import yaml

        node = yaml.compose(read_text(error.path), Loader=yaml.SafeLoader)
    except Exception:
        return error
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == error.key:
                # The value is what is wrong (`version: 1.0`), so the column points at it.
                mark = value_node.start_mark
                return error.placed(mark.line + 1, mark.column + 1)
    return error
