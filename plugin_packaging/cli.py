"""The `plugin-packaging` console command: invoke's `Program` over our task collection.

It works from any directory (a StreamKit checkout needs no copy of this code); `--root` on
each task names the checkout.

Start-up is most of what a quick command costs (about 120 of the 160 ms of a no-op
`copy-plugins-native`), so this module imports only invoke and the thin task modules; each task
imports the code it runs. Measured with benchmarks/run.py: the interpreter takes ~22 ms,
`import invoke` ~95 ms more (its `__init__` imports `importlib.metadata` for its version, and
`unittest.mock`, which brings `asyncio`, for `MockContext`), our own modules under 10 ms.
"""

from __future__ import annotations

import gc

# Importing invoke and the tasks creates tens of thousands of objects that live as long as the
# process; the cyclic collector would scan them over and over while they are being created (about
# 5% of the start-up). It is paused for these imports only, and what they built is then frozen
# out of later collections; collection itself stays on for the tasks.
_collecting = gc.isenabled()
gc.disable()
try:
    import os
    import sys

    from invoke.config import Config
    from invoke.exceptions import Exit, UncastableEnvVar
    from invoke.program import Program

    from plugin_packaging import __version__
    from plugin_packaging.tasks import ns
finally:
    gc.freeze()
    if _collecting:
        gc.enable()


class PluginPackagingProgram(Program):
    """invoke's `Program`, keeping Python's bytecode cache on.

    invoke turns bytecode writing off (unless `--write-pyc`) so that loading a project's
    `tasks.py` leaves no `.pyc` beside it; our tasks are an installed package, and without the
    cache every module a task imports is compiled again on every run (about 45 ms of a first
    install, measured with benchmarks/run.py).
    """

    def parse_core(self, argv: list[str] | None) -> None:
        keep = sys.dont_write_bytecode
        super().parse_core(argv)
        sys.dont_write_bytecode = keep


class PluginPackagingConfig(Config):
    """invoke's config, with a readable exit for environment variables of the wrong type."""

    def load_shell_env(self) -> None:
        try:
            super().load_shell_env()
        except (UncastableEnvVar, ValueError) as exc:
            # invoke casts INVOKE_* values to the type of the default (int, list...) and raises
            # without naming the variable; name the candidates instead of showing a traceback.
            names = sorted(name for name in os.environ if name.startswith("INVOKE_PLUGINS_"))
            raise Exit(
                f"error[bad-setting]: an environment variable does not fit its setting ({exc})\n"
                f"  hint: check {', '.join(names) or 'the INVOKE_* variables'}: numbers must be "
                "whole numbers, and lists or mappings belong in invoke.yaml",
                2,
            ) from None


program = PluginPackagingProgram(
    namespace=ns,
    version=__version__,
    name="plugin-packaging",
    binary="plugin-packaging",
    config_class=PluginPackagingConfig,
)


def main() -> None:
    try:
        program.run()
    except BrokenPipeError:
        # `plugin-packaging ... | head`: the reader left; say nothing more, as cat and grep do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
