"""One module per graph: state schema, wiring and a module-level compiled `graph`."""
