"""Code lists of the IGRT coding standard, as data, in one place.

Every rule reads its codes from here; nothing else in the package spells a
HCPCS code. Sources: ../shared/seed/igrt-coding-standard.md, SPEC 3 and 6.

`CODE_TABLE` gives every code a rule uses the dates of service it is billable
on, the document each dated change comes from, and what replaces it. A code is
deleted from the day after its last `valid_until`; next year's changes are
new or changed entries there, not new code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

RULESET: Final = "evolent-igrt-2024.04+2026"

# Modalities (SPEC 3.2). UNKNOWN_EXTERNAL is an external-beam delivery whose
# technique neither the code nor the event says.
SUPERFICIAL: Final = "SUPERFICIAL"
TWO_D: Final = "2DCRT"
THREE_D: Final = "3DCRT"
IMRT: Final = "IMRT"
ELECTRON: Final = "ELECTRON"
PBT: Final = "PBT"
SBRT: Final = "SBRT"
SRS: Final = "SRS"
IORT: Final = "IORT"
BRACHY: Final = "BRACHY"
UNKNOWN_EXTERNAL: Final = "UNKNOWN"

EVENT_MODALITIES: Final = frozenset(
    {SUPERFICIAL, TWO_D, THREE_D, IMRT, ELECTRON, PBT, SBRT, SRS, IORT, BRACHY}
)


def _g_range(first: int, last: int) -> list[str]:
    return [f"G{n:04d}" for n in range(first, last + 1)]


# Delivery code -> modality implied by the code (None: the event's modality,
# else unknown external beam).
DELIVERY_MODALITY: Final[dict[str, str | None]] = {
    "77401": SUPERFICIAL,
    **{code: None for code in ["77402", "77407", "77412", *_g_range(6003, 6014)]},
    **{code: IMRT for code in ["77385", "77386", "G6015", "G6016"]},
    **{code: PBT for code in ["77520", "77522", "77523", "77525"]},
    **{code: SBRT for code in ["77373", "G0340"]},
    **{code: SRS for code in ["77371", "77372", "G0339"]},
    **{code: IORT for code in ["77424", "77425"]},
    **{
        code: BRACHY
        for code in [
            "77750",
            "77761",
            "77762",
            "77763",
            "77767",
            "77768",
            "77769",
            "77770",
            "77771",
            "77772",
            "77778",
            "77789",
        ]
    },
}

DELIVERY_CODES: Final = frozenset(DELIVERY_MODALITY)

# Guidance codes (SPEC 3.4).
CT_GUIDANCE: Final = "77014"
IGRT: Final = "77387"
PORT_IMAGE: Final = "77417"
ULTRASOUND: Final = "G6001"
STEREOSCOPIC: Final = "G6002"
INTRAFRACTION: Final = "G6017"
ALLOWED_BILLABLE_GROUP: Final = frozenset(
    {CT_GUIDANCE, IGRT, PORT_IMAGE, ULTRASOUND, STEREOSCOPIC, INTRAFRACTION}
)
# 77014 counts as a localization code only on a day with a fraction; the
# per-fraction rule only looks at such days.
LOCALIZATION_CODES: Final = frozenset({CT_GUIDANCE, IGRT, ULTRASOUND, STEREOSCOPIC})
IGRT_NEEDING_FRACTION: Final = frozenset({IGRT, ULTRASOUND, STEREOSCOPIC, INTRAFRACTION})

# Simulation codes.
VERIFICATION_SIMULATION: Final = "77280"
# 77295 (3-D simulation-aided field setting) with ASTRO's 77014 guidance (SPEC 6).
SIMULATION_CODES: Final = frozenset({"77280", "77285", "77290", "77295"})

# IMRT delivery codes whose day bundles the technical component of 77387.
IMRT_DELIVERY_CODES: Final = frozenset({"77385", "77386", "G6015", "G6016"})

# From this date 77387 is professional-only and the PC is payable everywhere
# (the second CODE_TABLE entry of 77387).
IGRT_2026_CHANGE: Final = "2026-01-01"

# Allowed modalities per guidance code (SPEC 6, port-image-modality and igrt-modality).
ALLOWED_MODALITIES: Final[dict[str, frozenset[str]]] = {
    PORT_IMAGE: frozenset({TWO_D, THREE_D, IMRT, PBT, SUPERFICIAL}),
    IGRT: frozenset({TWO_D, THREE_D, IMRT, PBT, SUPERFICIAL}),
    ULTRASOUND: frozenset({TWO_D, THREE_D, SUPERFICIAL}),
    STEREOSCOPIC: frozenset({THREE_D, IMRT}),
    CT_GUIDANCE: frozenset({TWO_D, THREE_D, IMRT}),
}

# Skin cancer and keloid diagnoses, ICD-10-CM without dots, matched by prefix.
SKIN_OR_KELOID_PREFIXES: Final = ("C43", "C44", "D03", "D04", "L910")

# Places of service of a hospital outpatient department.
HOSPITAL_OUTPATIENT_POS: Final = frozenset({"19", "22"})
PC_MODIFIER: Final = "26"
TC_MODIFIER: Final = "TC"

# Port images: one unit allowed per this many fractions.
FRACTIONS_PER_PORT_IMAGE: Final = 5


# -- Dated code data -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """A document a dated change comes from."""

    title: str
    published: str

    def __str__(self) -> str:
        return f"{self.title}, {self.published}"


STANDARD_2024: Final = Source(
    'Evolent, "Image Guidance – Radiation Oncology Coding Standard"', "revised March 2024"
)
ASTRO_2026: Final = Source(
    'ASTRO, "Major Radiation Oncology Code Changes in 2026", ASTROnews', "Winter 2026"
)


@dataclass(frozen=True, slots=True)
class CodeEntry:
    """One period in which a code is billable on the same terms.

    `valid_from` is the first date of service (None: before every source; it
    is shown, not checked), `valid_until` the last (None: still billable).
    A code with several entries has them in date order, back to back.
    `source` is the document the entry's dates come from (None only for an
    entry with no date), `note` what the biller needs to know: for a
    deleted code, what to bill instead.
    """

    code: str
    valid_from: str | None
    valid_until: str | None
    source: Source | None
    replaced_by: tuple[str, ...] = ()
    note: str = ""

    @property
    def deleted_from(self) -> str | None:
        """The first date of service after this entry (None: open-ended)."""
        if self.valid_until is None:
            return None
        return (date.fromisoformat(self.valid_until) + timedelta(days=1)).isoformat()


class CodeTableError(ValueError):
    """The code data is inconsistent."""


class CodeTable:
    """The dated code data, checked once: every code's entries in date order."""

    def __init__(self, entries: Iterable[CodeEntry]) -> None:
        self.entries: tuple[CodeEntry, ...] = tuple(entries)
        history: dict[str, list[CodeEntry]] = {}
        for entry in self.entries:
            _check_entry(entry)
            held = history.setdefault(entry.code, [])
            if held and held[-1].deleted_from != entry.valid_from:
                raise CodeTableError(
                    f"{entry.code}: entry from {entry.valid_from} does not follow the one "
                    f"valid until {held[-1].valid_until}"
                )
            held.append(entry)
        self.history: dict[str, tuple[CodeEntry, ...]] = {
            code: tuple(held) for code, held in history.items()
        }
        # code -> (first date of service on which it is deleted, its last entry)
        self.deletions: dict[str, tuple[str, CodeEntry]] = {}
        for code, periods in self.history.items():
            last = periods[-1]
            if last.deleted_from is not None:
                self.deletions[code] = (last.deleted_from, last)

    def __contains__(self, code: object) -> bool:
        return code in self.history

    def deleted(self, code: str, date_of_service: str) -> CodeEntry | None:
        """The code's last entry if the code is deleted on that date, else None."""
        found = self.deletions.get(code)
        if found is None or date_of_service < found[0]:
            return None
        return found[1]


def _check_entry(entry: CodeEntry) -> None:
    for name in ("valid_from", "valid_until"):
        value = getattr(entry, name)
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise CodeTableError(f"{entry.code}: {name} {value!r} is not a date") from None
    if entry.valid_from and entry.valid_until and entry.valid_until < entry.valid_from:
        raise CodeTableError(f"{entry.code}: valid_until is before valid_from")
    if (entry.valid_from or entry.valid_until) and entry.source is None:
        raise CodeTableError(f"{entry.code}: a dated entry needs its source")


def _entries(
    codes: Iterable[str],
    valid_from: str | None = None,
    valid_until: str | None = None,
    source: Source | None = None,
    replaced_by: Iterable[str] = (),
    note: str = "",
) -> list[CodeEntry]:
    return [
        CodeEntry(code, valid_from, valid_until, source, tuple(replaced_by), note) for code in codes
    ]


_DELIVERY_2026: Final = ("77402", "77407", "77412")
_DELETED_DELIVERY_2026: Final = ("77385", "77386", *_g_range(6003, 6016))
_GUIDANCE_2026_NOTE: Final = (
    "image guidance for all treatment delivery is consolidated into 77387, billed "
    "professional only: bill 77387-26 instead"
)

CODE_TABLE: Final[tuple[CodeEntry, ...]] = (
    # Deleted in 2015, replaced by 77387 (the standard's opening paragraph).
    *_entries(
        ["76950", "77421", "0197T"],
        valid_until="2014-12-31",
        source=STANDARD_2024,
        replaced_by=[IGRT],
        note="replaced by 77387, which includes all forms of IGRT: bill 77387 instead",
    ),
    # Image guidance.
    CodeEntry(IGRT, "2015-01-01", "2025-12-31", STANDARD_2024, (), "professional and technical"),
    CodeEntry(
        IGRT,
        IGRT_2026_CHANGE,
        None,
        ASTRO_2026,
        (),
        "professional only; its technical component is bundled into delivery (77402, 77407, 77412)",
    ),
    *_entries(
        [CT_GUIDANCE, ULTRASOUND, STEREOSCOPIC, INTRAFRACTION],
        valid_until="2025-12-31",
        source=ASTRO_2026,
        replaced_by=[IGRT],
        note=_GUIDANCE_2026_NOTE,
    ),
    *_entries([PORT_IMAGE], note="technical only; no dated change"),
    # Simulation.
    *_entries(["77280", "77285", "77290"], note="no dated change"),
    *_entries(["77295"], note="no dated change; bundles 77014 like a simulation (ASTRO)"),
    # External-beam delivery: consolidated into 77402, 77407 and 77412 from 2026.
    *_entries(
        _DELIVERY_2026,
        note="from 2026-01-01 all external-beam delivery, with the technical component "
        "of image guidance bundled in (ASTRO, Winter 2026)",
    ),
    *_entries(
        _DELETED_DELIVERY_2026,
        valid_until="2025-12-31",
        source=ASTRO_2026,
        replaced_by=_DELIVERY_2026,
        note="delivery is consolidated into 77402, 77407 and 77412: bill one of them "
        "with the technique",
    ),
    *_entries(
        sorted(
            code
            for code in DELIVERY_MODALITY
            if code not in {*_DELIVERY_2026, *_DELETED_DELIVERY_2026}
        ),
        note="no dated change",
    ),
)

CODES: Final = CodeTable(CODE_TABLE)
