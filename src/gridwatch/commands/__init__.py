"""Commands of ``gridwatch``, one module per command or group of commands.

Each module defines Click commands that parse their arguments, call the library and return
the exit status; :mod:`gridwatch.cli` lists them.
"""
