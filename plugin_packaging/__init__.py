"""plugin_packaging: find, install, check and package StreamKit's native plugins."""

__version__ = "0.1.0"
