from plugin_packaging.tasks import ns  # noqa: F401  (`invoke copy-plugins-native` and the rest)
