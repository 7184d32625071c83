"""The rules a release bundle must meet, as data: what the server's installer and StreamKit's
portability gate refuse, and what to do about it.

They sit beside the loader's rules (`rules/loader.py`) and join them in `rules/table.py`, so a
bundle finding is a `Violation` -> `Finding` like any other: the same message formatting, the
same severity overrides (`plugins.rules: {CODE: warning|ignore}`), the same text, JSON and
GitHub renderings. `release/verify.py` only says which rule a bundle breaks.

`CUDA_LIBRARY` is policy too: which names are CUDA's (StreamKit's gate lists libcudart,
libcublas, libcudnn, libcuda and libnvrtc). Which needed libraries every Linux machine has is
kept as data beside the vendoring that uses it (`release/system-libraries.json`, read by
`release/vendor.py`), so packaging and verifying never disagree.
"""

from __future__ import annotations

import re

from plugin_packaging.rules.model import LoaderRule

#: CUDA's libraries, by name: `libcudart.so.12`, `libcublasLt.so.12`, `libcudnn_ops.so.9`,
#: `libcuda.so.1`, `libnvrtc.so.12`, and the Windows names without `lib` (`cudart64_12.dll`).
CUDA_LIBRARY = re.compile(r"^(lib)?(cudart|cublas|cudnn|cuda|nvrtc)([._\-A-Z0-9]|$)")

#: What StreamKit's bundle gate (verify_bundles.py) requires beside an entry library that needs
#: a given library, whatever the machine that verifies has installed: sherpa-onnx's C API and
#: the ONNX Runtime it loads.
GATE_REQUIRED_VENDORED: dict[str, tuple[str, ...]] = {
    "libsherpa-onnx-c-api.so": ("libsherpa-onnx-c-api.so", "libonnxruntime.so"),
}

_REPACK = "package it again with package-plugins-native, which writes only plain files with relative names"

BUNDLE_RULES: dict[str, LoaderRule] = {
    rule.code: rule
    for rule in (
        # --- the archive (the installer's safe extraction) ---------------------------------------
        LoaderRule(
            "bundle-unsafe-member",
            "error",
            "{detail}; the server's installer refuses the whole bundle",
            _REPACK,
            "release-formats: bundle archive",
        ),
        LoaderRule(
            "bundle-too-large",
            "error",
            "{detail}; refused before unpacking further (an archive bomb, or the wrong file?)",
            "a plugin bundle unpacks to a library and a few files; if it really is this large, raise "
            "plugins.bundle_max_unpacked_bytes or plugins.bundle_max_members",
            "release-formats: bundle archive",
        ),
        LoaderRule(
            "bundle-corrupt",
            "error",
            "{detail}",
            "download or package the bundle again",
            "release-formats: bundle archive",
        ),
        # --- what the bundle holds -----------------------------------------------------------------
        LoaderRule(
            "bundle-manifest-missing",
            "error",
            "holds no {name}{why}",
            "package it with package-plugins-native, which puts plugin.yml and manifest.json next to "
            "the library",
            "release-formats: bundle archive",
        ),
        LoaderRule(
            "bundle-manifests-disagree",
            "error",
            "plugin.yml and manifest.json disagree on {keys}",
            "package the bundle again: both files are written from the same source manifest",
            "release-formats: bundle archive",
        ),
        LoaderRule(
            "bundle-entrypoint-missing",
            "error",
            "`entrypoint` {entrypoint!r} is not in the bundle (it holds {members}); the installer "
            "refuses it",
            "put the library at {entrypoint} in the archive, or make `entrypoint` name the library",
            "section 6",
        ),
        LoaderRule(
            "bundle-name-mismatch",
            "warning",
            "the file name does not fit the plugin it holds ({plugin_id} {version}): expected "
            "{expected}",
            "rename it to {expected}: release pages and registries find bundles by this name",
            "release-formats: bundle archive",
        ),
        # --- portability (StreamKit's verify_bundles gate) -----------------------------------------
        LoaderRule(
            "bundle-search-path-absolute",
            "error",
            "{tag} holds {entries}: the library looks for its dependencies in directories of the "
            "machine that built it",
            "vendor what it needs next to it in the bundle and set {tag} to $ORIGIN "
            "(patchelf --set-rpath '$ORIGIN' {name}); StreamKit's bundle gate refuses /usr/local/lib",
            "section 5",
        ),
        LoaderRule(
            "bundle-dependency-not-vendored",
            "error",
            "needs {symbol}, which is not in the bundle ({found}); it will not load on users' machines",
            "package with vendoring on (plugins.vendor, the default: package-plugins-native copies "
            "{symbol} next to the entry library and sets RUNPATH to $ORIGIN), or link it statically",
            "release-formats: portability checks",
        ),
        LoaderRule(
            "bundle-runtime-missing",
            "error",
            "needs {needed}, so StreamKit's bundle gate requires {symbol} beside it, and the bundle "
            "does not hold it",
            "package with vendoring on (plugins.vendor, the default) and without {symbol} in "
            "plugins.vendor.exclude: package-plugins-native then copies it next to the entry library",
            "release-formats: portability checks",
        ),
        LoaderRule(
            "bundle-dependency-unreachable",
            "error",
            "needs {symbol}; the bundle holds {bundled}, but the library's search path does not lead "
            "there ({searched})",
            "set RUNPATH to {suggestion} (patchelf --set-rpath '{suggestion}' {name})",
            "release-formats: portability checks",
        ),
        LoaderRule(
            "bundle-dependency-system",
            "info",
            "needs {symbol} from the system ({found}); users must have it installed",
            "say so in the plugin's description (as aac-encoder does for libfdk-aac), or vendor it",
            "release-formats: portability checks",
        ),
        LoaderRule(
            "bundle-cuda-in-cpu-bundle",
            "error",
            "{what} {symbol}, a CUDA library, but this is the CPU bundle: it fails to load on "
            "machines without CUDA",
            "build the CPU artifact without CUDA, and publish the CUDA build as a variant "
            "(artifact_cuda, packaged with --accelerator cuda)",
            "release-formats: portability checks",
        ),
        # --- against the registry -----------------------------------------------------------------
        LoaderRule(
            "bundle-not-in-registry",
            "error",
            "{plugin_id} {version} has no manifest in the registry (looked for {expected})",
            "package the bundles and the registry in one run, or pass the registry they were "
            "published in",
            "release-formats: registry manifest",
        ),
        LoaderRule(
            "bundle-not-listed",
            "error",
            "the registry manifest of {plugin_id} {version} lists no bundle named {bundle} (it "
            "lists {listed})",
            "publish the bundle under the name its manifest's URL ends with, or package again",
            "release-formats: registry manifest",
        ),
        LoaderRule(
            "bundle-checksum-mismatch",
            "error",
            "{what} is {actual}, but {manifest} says {expected}; the installer refuses the download",
            "publish exactly the bundle that was packaged with this registry (a rebuilt bundle "
            "needs a new version)",
            "release-formats: bundle archive",
        ),
        LoaderRule(
            "bundle-manifest-differs",
            "error",
            "manifest.json inside the bundle differs from the registry manifest {manifest} in {keys}",
            "package the bundle and its registry manifest in the same run",
            "release-formats: bundle archive",
        ),
        LoaderRule(
            "bundle-checksum-list-mismatch",
            "error",
            "{detail}",
            "{fix}",
            "release-formats: signatures and checksums",
        ),
        LoaderRule(
            "registry-signature-invalid",
            "error",
            "{detail}; the server refuses this manifest",
            "{fix}",
            "release-formats: signatures and checksums",
        ),
        LoaderRule(
            "registry-signature-unchecked",
            "info",
            "manifest signatures were not checked: no public key was given and the registry has no "
            "streamkit.pub",
            "pass --public-key with the key the server trusts ([plugins].trusted_pubkeys)",
            "release-formats: signatures and checksums",
        ),
        LoaderRule(
            "registry-index-missing-version",
            "error",
            "{plugin_id} {version} is not listed in {index}; the marketplace will not offer it",
            "package the registry again: index.json lists every published manifest",
            "release-formats: registry index",
        ),
    )
}
