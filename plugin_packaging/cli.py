"""The `plugin-packaging` console command: invoke's `Program` over our task collection.

It works from any directory (a StreamKit checkout needs no copy of this code); `--root` on
each task names the checkout.
"""

from __future__ import annotations

from invoke import Program

from . import __version__
from .tasks import ns

program = Program(namespace=ns, version=__version__, name="plugin-packaging", binary="plugin-packaging")


def main() -> None:
    program.run()
