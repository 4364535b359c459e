"""The one exception lab commands raise for a problem the user must fix."""

from __future__ import annotations


class LabError(RuntimeError):
    """Something the lab could not do; the message says what and what to do."""
