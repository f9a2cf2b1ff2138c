"""metav1.Conditions as the hub writes them: a transition time that moves only when the status does,
and comparisons that ignore it (so an unchanged verdict is never written again)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crds import Condition

MAX_MESSAGE = 2000  # a condition message stays readable; the rest is counted


@dataclass(frozen=True)
class Verdict:
    """A condition to write: type, status, reason, message."""

    type: str
    status: str  # "True" / "False" / "Unknown"
    reason: str
    message: str

    @classmethod
    def of(cls, type: str, ok: bool, reason: str, message: str) -> Verdict:
        return cls(type, "True" if ok else "False", reason, message)


def shorten(message: str, limit: int = MAX_MESSAGE) -> str:
    if len(message) <= limit:
        return message
    cut = message[:limit].rsplit("; ", 1)[0]
    return f"{cut}; ... ({len(message) - len(cut)} more characters)"


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def render(
    verdicts: Iterable[Verdict], current: Sequence[Condition] | None, generation: int | None, now: datetime
) -> list[dict[str, Any]]:
    """The conditions' wire form, keeping each one's lastTransitionTime while its status is unchanged."""
    previous = {condition.type: condition for condition in current or []}
    rendered = []
    for verdict in verdicts:
        old = previous.get(verdict.type)
        since = old.last_transition_time if old is not None and old.status == verdict.status else now
        entry: dict[str, Any] = {
            "type": verdict.type,
            "status": verdict.status,
            "reason": verdict.reason,
            "message": shorten(verdict.message),
            "lastTransitionTime": rfc3339(since),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        rendered.append(entry)
    return rendered


def same_conditions(current: Sequence[Condition] | None, rendered: Sequence[dict[str, Any]]) -> bool:
    """Whether `current` already says what `rendered` says (transition times aside)."""
    if len(current or ()) != len(rendered):
        return False
    return all(
        (c.type, c.status, c.reason, c.message, c.observed_generation)
        == (r["type"], r["status"], r["reason"], r["message"], r.get("observedGeneration"))
        for c, r in zip(current or (), rendered, strict=True)
    )
