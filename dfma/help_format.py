"""The ``--help`` formatter of the command-line tools: each option's default said once.

argparse's ``ArgumentDefaultsHelpFormatter`` appends ``(default: X)`` to every option, also where the help text
already says the default in words ("default: 512 small model, 96 large"), and prints ``(default: None)`` or
``(default: False)`` for options whose default says nothing. :class:`DefaultsOnceFormatter` appends the default
only where it is a value and the help does not already mention one.
"""
from __future__ import annotations

import argparse
import re

# help text that already states its default: "(default: ...)", "default: ...", "defaults to ...", "%(default)s"
_STATES_DEFAULT = re.compile(r"%\(default\)|\bdefaults?\b\s*(:|to\b|is\b)", re.IGNORECASE)


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``ArgumentDefaultsHelpFormatter`` without the repeated or empty defaults (see the module docstring)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        says_nothing = (default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                        or (isinstance(default, (str, list, tuple)) and not default))
        shown = bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
        if says_nothing or not shown or _STATES_DEFAULT.search(help_text):
            return action.help
        return help_text + " (default: %(default)s)"
