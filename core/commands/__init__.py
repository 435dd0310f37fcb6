"""Sub-commands of the `segexplain` command line (one module each)."""
