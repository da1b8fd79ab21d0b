"""What a synthetic course is made of: claim types and modifiers, treatment
families and the guidance each may bill, payers, and the catalog of courses
(modality, site, diagnoses, usual fractions) with their weights."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

PROF: Final = "professional"
INST: Final = "institutional"
PC: Final = "26"
TC: Final = "TC"

Y2026: Final = date(2026, 1, 1).toordinal()

# Families of treatment (SPEC 3.2 modalities, plus how they are billed here).
F3D: Final = "3DCRT"
F2D: Final = "2DCRT"
FIMRT: Final = "IMRT"
FPBT: Final = "PBT"
FSBRT: Final = "SBRT"
FSUP: Final = "SUPERFICIAL"
FBRACHY: Final = "BRACHY"
FELECTRON: Final = "ELECTRON"
SCALED: Final = frozenset({F3D, F2D, FIMRT, FPBT, FSUP, FELECTRON})
IGRT_ALLOWED: Final = frozenset({F2D, F3D, FIMRT, FPBT, FSUP})  # 77387
CT_ALLOWED: Final = frozenset({F2D, F3D, FIMRT})  # 77014
KV_ALLOWED: Final = frozenset({F3D, FIMRT})  # G6002
US_ALLOWED: Final = frozenset({F2D, F3D, FSUP})  # G6001
PORT_ALLOWED: Final = frozenset({F2D, F3D, FIMRT, FPBT, FSUP})  # 77417
IMRT_DELIVERY: Final = frozenset({"77385", "77386", "G6015", "G6016"})

# Guidance technique of a course; the code billed for it depends on the
# payer, the setting, the delivery code of the day and the year.
CBCT: Final = "cbct"
KV: Final = "kv"
US: Final = "us"
NONE: Final = "none"

# Codes with only a professional or only a technical component; the rest
# are split (institutional TC line + professional -26 line) in a hospital.
PROF_ONLY: Final = frozenset(
    {"99205", "99204", "77261", "77262", "77263", "77427", "77431", "77435", "77469"}
)
TECH_ONLY: Final = frozenset(
    {
        "77336",
        "77370",
        "77401",
        "77402",
        "77407",
        "77412",
        "77385",
        "77386",
        "77373",
        "G6015",
        "G6016",
        "G0340",
        "G6017",
        "77520",
        "77522",
        "77523",
        "77525",
        *(f"G{n:04d}" for n in range(6003, 6015)),
    }
)

PAYERS: Final[tuple[tuple[str, float, tuple[str, ...]], ...]] = (
    ("medicare", 0.45, ("MCR-JH", "MCR-J15", "MCR-JE", "MCR-JL")),
    ("commercial", 0.37, ("AETNA", "BCBS-IL", "CIGNA", "UHC", "ANTHEM-CA")),
    ("medicaid", 0.11, ("MCD-TX", "MCD-NY", "MCD-CA")),
    ("other", 0.07, ("TRICARE", "VA-CCN", "WC-LIBERTY")),
)


@dataclass(frozen=True, slots=True)
class Rx:
    """A kind of course: family (modality), site, diagnoses, usual fractions."""

    family: str
    site: str
    dx: tuple[str, ...]
    fractions: tuple[int, ...]
    weight: float
    hospital_share: float


CATALOG: Final[tuple[Rx, ...]] = (
    Rx(F3D, "left-breast", ("C50.412", "C50.912", "D05.12"), (16, 25, 30), 7, 0.6),
    Rx(F3D, "right-breast", ("C50.411", "C50.911", "D05.11"), (16, 25, 30), 7, 0.6),
    Rx(F3D, "rectum", ("C20",), (25, 28), 3, 0.6),
    Rx(F3D, "lung", ("C34.11", "C34.31", "C34.90"), (15, 30), 3, 0.6),
    Rx(F2D, "spine", ("C79.51",), (1, 5, 10), 4, 0.6),
    Rx(F2D, "whole-brain", ("C79.31",), (5, 10), 2, 0.6),
    Rx(F2D, "left-hip", ("C79.51",), (5, 10), 1, 0.6),
    Rx(FIMRT, "prostate", ("C61",), (20, 28, 39, 44), 12, 0.55),
    Rx(FIMRT, "head-neck", ("C32.9", "C10.9", "C01", "C09.9"), (30, 33, 35), 6, 0.7),
    Rx(FIMRT, "left-breast", ("C50.412", "C50.912"), (16, 25), 4, 0.6),
    Rx(FIMRT, "cervix", ("C53.9",), (25, 28), 2, 0.7),
    Rx(FIMRT, "pancreas", ("C25.0",), (25, 28), 2, 0.7),
    Rx(FIMRT, "brain", ("C71.9", "C71.1"), (30,), 3, 0.7),
    Rx(FPBT, "prostate", ("C61",), (20, 28, 39, 44), 2, 1.0),
    Rx(FPBT, "brain", ("C71.9", "D33.2"), (30, 33), 1, 1.0),
    Rx(FPBT, "esophagus", ("C15.5",), (25, 28), 1, 1.0),
    Rx(FPBT, "head-neck", ("C10.9", "C11.9"), (33, 35), 1, 1.0),
    Rx(FSBRT, "lung", ("C34.11", "C34.12", "C34.31"), (3, 4, 5), 5, 0.7),
    Rx(FSBRT, "liver", ("C22.0", "C78.7"), (3, 5), 1, 0.8),
    Rx(FSBRT, "spine", ("C79.51",), (1, 3, 5), 2, 0.8),
    Rx(FSBRT, "prostate", ("C61",), (5,), 2, 0.6),
    Rx(FSUP, "skin-face", ("C44.311", "C44.319", "C44.329"), (8, 10, 16, 20), 4, 0.15),
    Rx(FSUP, "skin-scalp", ("C44.42", "C44.41"), (10, 15, 20), 2, 0.15),
    Rx(FSUP, "skin-ear", ("C44.212", "C44.221"), (10, 16), 1, 0.15),
    Rx(FSUP, "left-earlobe", ("L91.0",), (3,), 1, 0.15),
    Rx(FBRACHY, "cervix", ("C53.0", "C53.9"), (4, 5), 2, 1.0),
    Rx(FBRACHY, "vaginal-cuff", ("C54.1",), (3,), 2, 1.0),
    Rx(FBRACHY, "prostate", ("C61",), (1,), 1, 1.0),
    Rx(FELECTRON, "chest-wall", ("C50.911", "C50.912"), (5, 10), 1, 0.6),
    Rx(FELECTRON, "skin-nose", ("C44.311",), (10, 15), 1, 0.5),
)
CUMULATIVE: Final = tuple(sum(rx.weight for rx in CATALOG[: i + 1]) for i in range(len(CATALOG)))
