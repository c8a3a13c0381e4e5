"""Retry delays shared by the cloud link (reconnecting) and the supervisor (restarting a
part): pure, so the processes that import it load nothing else with it."""

from __future__ import annotations

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, initial: float, maximum: float, rand: float) -> float:
    """Exponential backoff with "equal jitter": half the step fixed, half random, so boxes
    that lost the cabinet together do not all come back in the same instant.
    ``rand`` is uniform in [0, 1)."""
    step: float = min(maximum, initial * 2.0 ** min(attempt, 62))
    return step / 2 + rand * step / 2
