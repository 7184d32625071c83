"""Invoke entry point of this repository: `invoke --list` shows the same tasks as `plugin-packaging`."""

from plugin_packaging.tasks import ns  # noqa: F401  (invoke looks for `ns`)
