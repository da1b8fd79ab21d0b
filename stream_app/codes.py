"""Code lists of the IGRT coding standard, as data, in one place.

Every rule reads its codes from here; nothing else in the package spells a
HCPCS code. Sources: ../shared/seed/igrt-coding-standard.md and SPEC 3.
"""

from __future__ import annotations

from typing import Final

RULESET: Final = "evolent-igrt-2024.04"

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
SIMULATION_CODES: Final = frozenset({"77280", "77285", "77290"})

# IMRT delivery codes whose day bundles the technical component of 77387.
IMRT_DELIVERY_CODES: Final = frozenset({"77385", "77386", "G6015", "G6016"})

# Deleted codes and the first date of service on which they are invalid.
DELETED_CODES: Final[dict[str, str]] = {
    **{code: "2015-01-01" for code in ["76950", "77421", "0197T"]},
    **{code: "2026-01-01" for code in ["77385", "77386", *_g_range(6003, 6016)]},
}

# From this date 77387 is professional-only and the PC is payable everywhere.
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
