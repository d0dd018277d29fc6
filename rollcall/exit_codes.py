"""Exit statuses the ``rollcall`` command's subcommands share."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
"""A bad argument, config or models directory: the person running the command can fix it."""
