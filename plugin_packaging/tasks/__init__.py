"""The task collection behind both `invoke <task>` and the `plugin-packaging` command.

Each module in this package holds the thin tasks of one concern; this one gathers them and
registers the settings defaults, so `invoke.yaml` (`plugins:`) and `INVOKE_PLUGINS_*` work.
"""

from __future__ import annotations

from invoke.collection import Collection

from plugin_packaging.settings import CONFIG_NAMESPACE, DEFAULTS
from plugin_packaging.tasks import check, everyday, install, release

ns = Collection()
for module in (install, everyday, check, release):
    for task in module.TASKS:
        ns.add_task(task)
ns.configure({CONFIG_NAMESPACE: DEFAULTS})
