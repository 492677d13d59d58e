"""The `personagraph` command line."""
