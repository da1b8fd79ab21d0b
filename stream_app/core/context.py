"""What evaluating one patient needs from the engine: the store, the rules,
the payer profile of a line and the settings. `Work` (one patient's state for
one event or batch) and `memos.diff` take this, not the `Engine`, so that the
engine imports them and nothing imports the engine back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from stream_app.core.holds import HoldCounts
from stream_app.core.profiles import Profile
from stream_app.core.rules import Registry
from stream_app.core.store import Store


@dataclass(frozen=True, slots=True)
class EngineSettings:
    course_idle_days: int = 45
    # A closed course whose last line is this many days behind the stream's
    # watermark is dropped from state; a later line for it is evaluated final.
    retain_days: int = 120
    # Overrides every payer profile's hold_days (SPEC 4.1); None: the profiles'.
    hold_days: int | None = None


ProfileOf = Callable[[str | None, str], Profile]


@dataclass(slots=True)
class Context:
    store: Store
    registry: Registry
    profile_of: ProfileOf
    settings: EngineSettings
    # Rule checks run so far (one per rule and day evaluated): a count that
    # tests use to see that evaluation follows what changed.
    rule_runs: int = 0
    holds: HoldCounts = field(default_factory=HoldCounts)
