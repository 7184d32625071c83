"""JSON Schemas of the documents this tool writes (shipped in the wheel as package data)."""
