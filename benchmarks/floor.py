"""The floor of a first install for any tool built like ours: its imports, then a parallel copy.

    python floor.py DEST LIBRARY...

Imports invoke, yaml and jinja2 (what a first `copy-plugins-native` cannot do without: the
command line, the source manifests, the template) and copies the libraries into DEST with four
threads, largest first. No manifest, no check, no atomic swap: the distance between this and the
real command is what the tool itself costs.
"""

from __future__ import annotations

import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import invoke  # noqa: F401
import jinja2  # noqa: F401
import yaml  # noqa: F401


def main(dest: str, libraries: list[str]) -> None:
    os.makedirs(dest, exist_ok=True)
    largest_first = sorted(libraries, key=os.path.getsize, reverse=True)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(
            pool.map(
                lambda path: shutil.copyfile(path, os.path.join(dest, os.path.basename(path))),
                largest_first,
            )
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
