"""CLI subcommands. Each module here defines ``add_parser(subparsers)``; the CLI finds them all.

A subcommand's handler takes ``(args, settings)`` and returns an exit code.
"""
