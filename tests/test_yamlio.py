"""`yamlio.load_yaml`: libyaml reads what it reads as PyYAML does, PyYAML's pure-Python parser the rest.

The two parsers must build the same data from every manifest people write and from everything
`manifest.yaml_entry` writes, and every mistake must still be reported by the pure-Python parser,
with its line and column.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin_packaging._fs import yamlio
from plugin_packaging._fs.yamlio import libyaml_reads_as_pyyaml, libyaml_safe_loader, load_yaml
from plugin_packaging.contract.manifest import SERVER_KEYS
from plugin_packaging.errors import PackagingError
from plugin_packaging.sources.plugin_yml import yaml_entry

REPOSITORY = Path(__file__).resolve().parent.parent
MANIFEST = Path("plugin.yml")

# Manifests as people write them: StreamKit's own shapes, comments, quoting styles, block and flow
# collections, multi-line text, Windows line ends, non-ASCII text.
WRITTEN = [
    'id: whisper\nname: Whisper\nversion: "0.3.0"\nnode_kind: whisper\nkind: native\n'
    "entrypoint: libwhisper.so\nartifact: target/plugins/release/libwhisper.so\n",
    "# a comment first\nid: kokoro  # trailing comment\nversion: '0.3.0'\n"
    "description: >\n  Text to speech,\n  folded.\nlicense: MPL-2.0\n",
    "id: slint\ndescription: |\n  Line one\n  Line two\n\nrepo: https://github.com/streamer45/streamkit\n",
    'id: vad\ncompatibility:\n  streamkit: ">=0.2"\n  os: [linux, macos]\n  arch:\n    - x86_64\n    - aarch64\n',
    "models:\n  - id: base\n    source: huggingface\n    repo_id: org/model\n    files: [a.bin, b.json]\n"
    "    file_checksums: {a.bin: abc123}\n    expected_size_bytes: 123456789\n    default: true\n",
    'assets:\n- type_id: voices\n  label: Voices\n  extensions: [".onnx"]\n  max_size_bytes: 1048576\n'
    "  content_type: binary\n",
    'id: a\r\nversion: "1.0.0"\r\ndescription: Windows line ends\r\n',
    "id: café\ndescription: \"Übersetzung — 翻訳 ✓\"\nname: 'it''s quoted'\n",
    "accelerators: [cuda, metal]\nextra_files:\n  - src: models/x.bin\n    dest: x.bin\n",
    "version: 0.10\nschema_version: 1\nflag: yes\nempty:\nnothing: ~\nnumber: 0x1F\nwhen: 2024-01-02\n",
    "---\nid: explicit-document\n...\n",
    '{id: flow, version: "1.0.0", kind: native}\n',
    "",
    "# only a comment\n",
    "plain text, not a mapping\n",
    "- a\n- b\n",
]

# Mistakes, each reported the same way whichever parser reads the file first.
BROKEN = [
    "plugins: [unclosed\n",
    "id: a\n\tversion: 1\n",
    "id: a\nid b\nversion: 1\n",
    "a: b: c\n",
    "- a\nb: 1\n",
    'value: "\\q"\n',
    "value: *undefined\n",
    'id: "unterminated\n',
    "id: a\x00b\n",
    "key: [1, 2}\n",
    "? complex key\n: value\n: again\n",
    "released: 2024-13-01\n",
    "size: !!int 0x\n",
]


def _careful(text: str) -> object:
    """What PyYAML's pure-Python loader makes of `text`: its data, or the error we report."""
    try:
        return ("data", yamlio._careful_load(text, MANIFEST))
    except PackagingError as exc:
        return ("error", exc.code, exc.message, exc.line, exc.column)


def _fast(text: str) -> object:
    try:
        return ("data", load_yaml(text, MANIFEST))
    except PackagingError as exc:
        return ("error", exc.code, exc.message, exc.line, exc.column)


def _repository_manifests() -> list[str]:
    return [
        path.read_text(encoding="utf-8") for path in sorted(REPOSITORY.glob("examples/**/*.yml"))
    ]


def test_this_pyyaml_has_a_libyaml_that_limits_nesting() -> None:
    # Without it every test below would compare the pure-Python loader with itself.
    loader = libyaml_safe_loader()
    assert loader is not None and issubclass(loader, yaml.CSafeLoader)


@pytest.mark.parametrize("text", WRITTEN + _repository_manifests())
def test_libyaml_and_pyyaml_read_written_manifests_alike(text: str) -> None:
    assert libyaml_reads_as_pyyaml(text)
    assert yaml.load(text, Loader=yaml.CSafeLoader) == yamlio._careful_load(text, MANIFEST)
    assert _fast(text) == _careful(text)


@pytest.mark.parametrize("text", BROKEN)
def test_mistakes_are_reported_by_the_pure_python_parser_with_line_and_column(text: str) -> None:
    outcome = _fast(text)
    assert outcome[0] == "error" and outcome == _careful(text)
    assert isinstance(outcome[3], int) and isinstance(outcome[4], int)


def test_a_value_that_only_looks_like_a_date_is_an_error_with_its_place_not_a_traceback() -> None:
    with pytest.raises(PackagingError) as caught:
        load_yaml("id: a\nreleased: 2024-02-30\n", MANIFEST)
    assert caught.value.code == "manifest-invalid-yaml"
    assert (caught.value.line, caught.value.column) == (
        2,
        11,
    ) and "quote it" in caught.value.message
    assert f"{MANIFEST.name}:2:11: " in caught.value.render()


@pytest.mark.parametrize(
    "text",
    ["id: a\tb\n", "id: a\x85b\n", "id: a\u2028b\n", "id: \ufeffa\n", "a: &x 1\nb: *x\n"],
)
def test_text_the_parsers_read_differently_goes_to_the_pure_python_parser(text: str) -> None:
    assert not libyaml_reads_as_pyyaml(text)
    assert _fast(text) == _careful(text)


def test_anchors_still_meet_the_alias_limit() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=False)
    )
    with pytest.raises(PackagingError) as caught:
        load_yaml(bomb, MANIFEST)
    assert caught.value.code == "manifest-alias-bomb"


@pytest.mark.parametrize(
    "text", ["[" * 200_000 + "]" * 200_000, "- " * 100_000 + "x\n", "{" * 300_000]
)
def test_hostile_nesting_ends_in_a_packaging_error(text: str) -> None:
    with pytest.raises(PackagingError) as caught:
        load_yaml(text, MANIFEST)
    assert caught.value.code in ("manifest-invalid-yaml", "manifest-too-deep")


def test_an_old_libyaml_without_a_nesting_limit_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from yaml import _yaml

    libyaml_safe_loader.cache_clear()
    monkeypatch.setattr(_yaml, "get_version", lambda: (0, 2, 5))
    try:
        assert libyaml_safe_loader() is None
        assert load_yaml("id: a\n", MANIFEST) == {"id": "a"}
    finally:
        monkeypatch.undo()
        libyaml_safe_loader.cache_clear()


# Values as manifests hold them, and the awkward ones: YAML words, numbers in strings, line
# breaks, quotes, comments markers, tags, every plane of Unicode.
_awkward = st.sampled_from(
    [
        "yes",
        "no",
        "0.10",
        "1e3",
        "~",
        "null",
        "- a",
        "a: b",
        "!x",
        "&a",
        "*a",
        "#",
        "|",
        ">",
        "2001-01-01",
        "0x1F",
        " lead",
        "trail ",
        "\n",
        "a\nb\n",
        "a\n\nb",
        "'",
        '"',
        "\\",
        "\t",
        "\x85",
        "\u2028",
        "\ufeff",
    ]
)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30) | _awkward
_leaf = _text | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()
_value = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(SERVER_KEYS), value=_value, allow_unicode=st.booleans())
def test_both_parsers_read_what_the_emitter_writes_alike(
    key: str, value: object, allow_unicode: bool
) -> None:
    try:
        text = yaml.safe_dump(
            {key: value},
            sort_keys=False,
            allow_unicode=allow_unicode,
            default_flow_style=False,
            width=1 << 30,
        )
    except yaml.YAMLError:
        return
    if libyaml_reads_as_pyyaml(text):
        assert yaml.load(text, Loader=yaml.CSafeLoader) == yaml.load(text, Loader=yaml.SafeLoader)


@settings(max_examples=200, deadline=None)
@given(value=_value)
def test_yaml_entry_writes_what_the_pure_python_loader_alone_would_choose(value: object) -> None:
    # The text chosen must not depend on libyaml: redo the choice with PyYAML's loader only.
    data = {"description": value}
    try:
        written = yaml_entry(data, "description")
    except PackagingError:
        return
    for allow_unicode in (True, False):
        text = yaml.safe_dump(
            data,
            sort_keys=False,
            allow_unicode=allow_unicode,
            default_flow_style=False,
            width=1 << 30,
        )
        if yaml.load(text, Loader=yaml.SafeLoader) == data:
            assert written == text
            return
    raise AssertionError(f"yaml_entry wrote {written!r}, which PyYAML does not read back")


def test_json_errors_name_the_line_and_deep_nesting_is_refused(tmp_path: Path) -> None:
    from plugin_packaging.release.published import read_json

    broken = tmp_path / "index.json"
    broken.write_text('{\n  "plugins": [,]\n}\n')
    with pytest.raises(PackagingError) as caught:
        read_json(broken)
    assert caught.value.code == "registry-json-invalid"
    assert caught.value.line == 2 and caught.value.path == broken
    assert "index.json:2:" in caught.value.render()
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PackagingError) as caught:
        read_json(deep)
    assert caught.value.message == "nests too deeply to be a registry file"
