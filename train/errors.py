"""The error a training run stops with: one line for the user, exit status 2."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message says why."""
