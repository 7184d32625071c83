"""Jinja2 templates of the files this tool generates (shipped in the wheel as package data)."""
