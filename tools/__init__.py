"""Tools a model binds (LangChain `@tool`s), each with explicit scope arguments.

None today: every graph calls its steps in a fixed order, so what a node needs for facts is a plain
function in its domain package (e.g. `insight/facts.py`). A tool that a model is given belongs here.
"""
