"""The `rap` commands, a module per family; flows/cli.py registers them on its app."""
