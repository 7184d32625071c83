"""Property tests: whatever the input, the readers and writers end in a value or a PackagingError.

- `yamlio` on arbitrary text and arbitrary bytes (through a real file);
- `plugin_yml.generate_manifest` / `contract.manifest.manifest_problems` / `render_manifest` on arbitrary mappings:
  either a clear refusal, or a plugin.yml that is UTF-8, loads back to exactly the data it was
  made from, and that the checker's own reader (`manifest_rules.read_manifest`) accepts;
- the checker over a bundle whose library is a real library with random damage
  (`check_plugins_dir`: every per-library rule, the load plan and the three renderings).

Each example runs under a watchdog (SIGALRM), so a hang fails the example instead of the suite.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixturelib import NativeLibraries
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from plugin_packaging.check.manifest import read_manifest
from plugin_packaging.contract.manifest import SERVER_KEYS, manifest_problems
from plugin_packaging.errors import PackagingError
from plugin_packaging.sources.plugin_yml import generate_manifest, render_manifest

WATCHDOG_SECONDS = 10


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


class Hang(Exception):
    pass


@contextmanager
def watchdog(seconds: int = WATCHDOG_SECONDS) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- values a YAML manifest can hold ---------------------------------------------------------------

# Text with the characters that break writers: controls, NEL, BOM, surrogates, astral characters.
_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(
            [
                "\x00",
                "\x07",
                "\x85",
                "\u2028",
                "\ufeff",
                "\ud800",
                "\udcff",
                "\U0001f600",
                ":",
                "#",
                "'",
            ]
        ),
    ),
    max_size=40,
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.dates(),
    st.datetimes(),
    st.binary(max_size=16),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(_text, st.integers()), inner, max_size=4),
    ),
    max_leaves=20,
)
_plausible = {
    "id": st.one_of(st.just("fuzz-plugin"), _text, _scalars),
    "version": st.one_of(st.just("1.2.3"), st.just("0.10"), st.just(0.1), _text, _scalars),
    "node_kind": st.one_of(st.just("fuzz_kind"), _text, _scalars),
    "kind": st.one_of(st.just("native"), st.just("wasm"), _scalars),
    "entrypoint": st.one_of(st.just("libfuzz.so"), st.just("../libfuzz.so"), _text, _scalars),
}


@st.composite
def source_mappings(draw: Callable[..., Any]) -> dict[Any, Any]:
    """A source declaration: mostly plausible required keys, any server key, random extras."""
    data: dict[Any, Any] = {}
    for key, strategy in _plausible.items():
        if draw(st.integers(0, 9)) > 0:  # each required key is present nine times in ten
            data[key] = draw(strategy)
    for key in draw(st.lists(st.sampled_from(SERVER_KEYS), max_size=6)):
        data[key] = draw(_values)
    data.update(draw(st.dictionaries(st.one_of(_text, st.integers()), _values, max_size=3)))
    return data


def _only_unicode_text(value: Any) -> bool:
    if isinstance(value, str):
        return not any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return all(_only_unicode_text(k) and _only_unicode_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_only_unicode_text(item) for item in value)
    return True


def _equal(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to itself (YAML round-trips .nan)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=False))
    return type(a) is type(b) and bool(a == b)


@fuzz(400)
@given(source=source_mappings())
# Found by this test: a YAML escape of a lone surrogate wrote a plugin.yml no UTF-8 reader takes.
@example(
    source={"id": "fuzz-plugin", "version": "1.2.3", "node_kind": "k", "homepage": "caf\ud800"}
)
@example(
    source={
        "id": "fuzz-plugin",
        "version": "1.2.3",
        "node_kind": "k",
        "entrypoint": "../libfuzz.so",
    }
)
def test_any_mapping_gives_a_refusal_or_a_manifest_that_reads_back_exactly(
    source: dict[Any, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    origin = Path("plugins/native/fuzz/plugin.yml")
    with watchdog():
        try:
            manifest = generate_manifest(
                source,
                origin="plugins/native/fuzz/plugin.yml",
                origin_path=origin,
                entrypoint="libfuzz.so",
                crate=None,
            )
            text = render_manifest(manifest)
        except PackagingError as error:
            assert error.code and error.message and "\n" not in error.render().splitlines()[0]
            return
    encoded = text.encode("utf-8")  # the installed file is written as UTF-8: it must encode
    loaded = yaml.safe_load(encoded.decode("utf-8"))
    assert _equal(loaded, dict(manifest.data)), text
    # The server reads it into Rust strings, which hold Unicode scalar values only: an escaped
    # lone surrogate ("\ud800") loads in Python but fails the server's parse.
    assert _only_unicode_text(loaded), text
    assert manifest_problems(loaded) == ()  # what was written validates again
    # The checker reads what the installer wrote, and the server's parse must accept it.
    path = tmp_path_factory.mktemp("fuzz-manifest") / "plugin.yml"
    path.write_bytes(encoded)
    read = read_manifest(path, "fuzz")
    assert read.parses, [v.code for v in read.violations]


@fuzz(300)
@given(data=_values)
def test_the_manifest_validator_answers_any_value_with_a_list_of_problems(data: Any) -> None:
    with watchdog():
        problems = manifest_problems(data if isinstance(data, dict) else {"id": data})
    assert all(problem.code for problem in problems)


# --- the YAML reader --------------------------------------------------------------------------------

_yaml_fragments = st.sampled_from(
    [
        "id: x\n",
        "a: &a [1, 2]\n",
        "b: *a\n",
        "- ",
        "[",
        "]",
        "{",
        "}",
        "? ",
        ": ",
        "!!python/object:os.system\n",
        "!!binary |\n  AAAA\n",
        "\t",
        "'",
        '"',
        "\\u",
        "\\ud800",
        "%YAML 1.1\n",
        "---\n",
        "...\n",
        "&x ",
        "*x ",
        "<<: *a\n",
        "\x00",
        "\x85",
        "\ufeff",
        "\n",
        "  ",
        "#",
        "|\n",
        ">-\n",
    ]
)
_yamlish_text = st.lists(st.one_of(_yaml_fragments, _text), max_size=40).map("".join)


@fuzz(500)
@given(text=st.one_of(_yamlish_text, st.text(max_size=400)))
@example(
    "id: x\x00\n"
)  # found by the corpus: the reader refused a NUL before the try (a traceback)
def test_load_yaml_on_any_text_gives_data_or_a_packaging_error(text: str) -> None:
    from plugin_packaging._fs.yamlio import load_yaml

    with watchdog():
        try:
            load_yaml(text, Path("fuzz.yml"))
        except PackagingError as error:
            assert error.path == Path("fuzz.yml")


@fuzz(300)
@given(
    raw=st.one_of(
        st.binary(max_size=600), _yamlish_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
    )
)
def test_load_yaml_file_on_any_bytes_gives_data_or_a_packaging_error(
    raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from plugin_packaging._fs.yamlio import load_yaml_file

    path = tmp_path_factory.mktemp("fuzz-yaml") / "plugin.yml"
    path.write_bytes(raw)
    with watchdog():
        try:
            load_yaml_file(path)
        except PackagingError as error:
            assert error.path == path


# --- the checker over damaged libraries ------------------------------------------------------------


def _mutate(data: bytearray, draw: Callable[..., Any]) -> bytearray:
    """1-4 random edits: flip a byte, overwrite a field with an edge value, or cut the file."""
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        edit = draw(st.sampled_from(["flip", "field", "field", "truncate"]))
        if edit == "flip":
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        elif edit == "field":
            limit = min(len(data), 8192) if draw(st.booleans()) else len(data)
            at = draw(st.integers(0, limit - 1))
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(
                st.one_of(
                    st.sampled_from(
                        [
                            0,
                            1,
                            0x7F,
                            0xFF,
                            0xFFFF,
                            2**31 - 1,
                            2**32 - 1,
                            2**63 - 1,
                            2**64 - 1,
                            len(data),
                            len(data) + 1,
                        ]
                    ),
                    st.integers(0, 2**64 - 1),
                )
            )
            data[at : at + width] = (value % (1 << (8 * width))).to_bytes(
                width, draw(st.sampled_from(["little", "big"]))
            )
        else:
            del data[draw(st.integers(0, len(data))) :]
    return data


@pytest.fixture(scope="module")
def damaged_tree(native_libs: NativeLibraries, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin directory with one good bundle and one whose library each example replaces."""
    plugins = tmp_path_factory.mktemp("fuzz-check") / ".plugins"
    for name, library in (
        ("good", native_libs.good_c_other),
        ("damaged", native_libs.vendored_dep),
    ):
        bundle = plugins / "native" / name
        bundle.mkdir(parents=True)
        shutil.copyfile(library, bundle / f"lib{name}.so")
        (bundle / "plugin.yml").write_text(
            yaml.safe_dump(
                {
                    "id": name,
                    "version": "1.0.0",
                    "node_kind": f"{name}_kind",
                    "kind": "native",
                    "entrypoint": f"lib{name}.so",
                }
            )
        )
    dependency = native_libs.vendored_dep.parent / "libstreamkit_fixture_vendored.so"
    shutil.copyfile(dependency, plugins / "native" / "damaged" / dependency.name)
    return plugins


@pytest.fixture(scope="module")
def library_seeds(native_libs: NativeLibraries) -> list[bytes]:
    return [
        p.read_bytes()
        for p in (
            native_libs.vendored_dep,
            native_libs.good_rust,
            native_libs.foreign_arch,
            native_libs.rpath_usr_local,
            native_libs.pie_executable,
        )
    ]


@fuzz(150)
@given(data=st.data())
def test_check_over_a_damaged_library_gives_findings_never_a_crash(
    damaged_tree: Path, library_seeds: list[bytes], data: st.DataObject
) -> None:
    from plugin_packaging.check.report import render
    from plugin_packaging.check.run import check_plugins_dir

    seed = data.draw(st.sampled_from(range(len(library_seeds))), label="seed")
    damaged = _mutate(bytearray(library_seeds[seed]), data.draw)
    (damaged_tree / "native" / "damaged" / "libdamaged.so").write_bytes(damaged)
    with watchdog():
        report = check_plugins_dir(damaged_tree, root=damaged_tree.parent)
        for output_format in ("text", "json", "github"):
            render(report, output_format)  # type: ignore[arg-type]
    json.dumps(report.to_dict())
    # The good bundle is judged on its own: damage next door never leaks into its verdict.
    assert not [
        f for f in report.findings if f.severity == "error" and "/native/good/" in str(f.path)
    ]


def test_the_watchdog_fires() -> None:
    """The watchdog really interrupts a hang (or every example above would pass vacuously)."""
    with pytest.raises(Hang), watchdog(1):
        while True:
            pass
