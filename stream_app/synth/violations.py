"""Violation injectors: each changes a built course so that it breaks one
rule of SPEC 6 (a few also trip a related rule, as a real billing error
would) and returns True, or returns False when the course cannot carry that
violation. `VIOLATIONS` names them; `Synth` tries them in a random order."""

from __future__ import annotations

from typing import Final

from stream_app.synth.calendar import weekday
from stream_app.synth.catalog import (
    CT_ALLOWED,
    F2D,
    F3D,
    FBRACHY,
    FELECTRON,
    FIMRT,
    FPBT,
    FSBRT,
    FSUP,
    IGRT_ALLOWED,
    IMRT_DELIVERY,
    INST,
    KV_ALLOWED,
    PC,
    PORT_ALLOWED,
    PROF,
    TC,
    US_ALLOWED,
    Y2026,
)
from stream_app.synth.course import Course, Injector, pick


def _v_port_units(c: Course) -> bool:
    """Two units on one port-image day; the unit of the port day before it is
    not billed, so the course total stays within one per five fractions."""
    if not c.port_days:
        return False
    at = c.rng.randrange(1, len(c.port_days)) if len(c.port_days) > 1 else 0
    c.guidance_docs(c.port_days[at], "77417")[0]["units"] = 2
    if at > 0:
        c.remove(c.guidance_docs(c.port_days[at - 1], "77417")[0])
    return True


def _v_port_professional(c: Course) -> bool:
    day = pick(c, c.port_days)
    if day is None:
        return False
    doc = c.guidance_docs(day, "77417")[0]
    if c.hospital:
        order = c.order_of(doc)
        c.remove(doc)
        c.line(day, "77417", PROF, [PC], order=order)
    else:
        doc["modifiers"] = [PC]
    return True


def _v_port_with_igrt(c: Course) -> bool:
    days = [d for d in c.port_days if d >= Y2026 or c.accepts_pc_2025]
    day = pick(c, days)
    if day is None:
        return False
    for doc in c.pc_guidance(day):
        c.remove(doc)
    c.line(day, "77387", PROF, [PC])
    return True


def _v_ct_with_simulation(c: Course) -> bool:
    if c.family not in CT_ALLOWED:
        return False
    day = c.vsim_day or c.sim_day
    c.line(day, "77014", PROF, c.pc_mods())
    return True


def _v_igrt_tc_with_imrt(c: Course) -> bool:
    days = [
        d for d, doc in c.delivery.items() if doc["hcpcs"] in IMRT_DELIVERY and d not in c.port_days
    ]
    day = pick(c, days)
    if day is None:
        return False
    if not c.hospital:
        for doc in c.pc_guidance(day):
            c.remove(doc)
    c.line(day, "77387", c.claim_type_tc(), [TC])
    return True


def _v_intrafraction_units(c: Course) -> bool:
    day = pick(c, [d for d in c.fraction_days if d < Y2026])  # G6017 is deleted from 2026
    if day is None:
        return False
    found = c.guidance_docs(day, "G6017")
    if found:
        found[0]["units"] = 2
    else:
        c.line(day, "G6017", c.claim_type_tc(), None, 2)
    return True


def _v_igrt_without_fraction(c: Course) -> bool:
    if c.session_days:
        # Stereoscopic X-ray to check the applicator: not IGRT of a fraction
        # (and G6002 is no brachytherapy guidance either).
        c.line(c.rng.choice(c.session_days), "G6002", PROF, [PC])
        return True
    # A Saturday within the course: no treatment that day.
    saturdays = [d + (5 - weekday(d)) % 7 for d in c.fraction_days]
    days = [d for d in saturdays if c.fraction_days and d < c.fraction_days[-1]]
    day = pick(c, days)
    if day is None:
        return False
    if c.family in IGRT_ALLOWED and c.family != FSUP and (day >= Y2026 or c.accepts_pc_2025):
        code = "77387"
    elif c.family in KV_ALLOWED:
        code = "G6002"
    elif c.family in US_ALLOWED and c.family != FSUP:
        code = "G6001"
    else:
        return False
    c.line(day, code, PROF, [PC])
    return True


def _v_ultrasound_institutional(c: Course) -> bool:
    if not c.hospital or c.family not in (F2D, F3D):
        return False
    days = [d for d in c.fraction_days if d not in c.port_days]
    day = pick(c, days)
    if day is None:
        return False
    for doc in c.guidance_docs(day, "77387", "77014"):
        if doc["claim_type"] == INST:
            c.remove(doc)
    c.line(day, "G6001", INST)
    return True


def _v_hospital_missing_26(c: Course) -> bool:
    """The physician bills 77014 from the hospital without modifier 26 (and the
    hospital bills no technical guidance that day, so only the 26 is wrong)."""
    if not c.hospital or c.family not in CT_ALLOWED:
        return False
    days = [d for d in c.fraction_days if c.pc_guidance(d)]
    day = pick(c, days)
    if day is None:
        return False
    order = c.order_of(c.pc_guidance(day)[0])
    for doc in c.guidance_docs(day, "77014", "77387", "G6001", "G6002"):
        c.remove(doc)
    c.line(day, "77014", PROF, [], order=order)
    return True


def _v_deleted_77421(c: Course) -> bool:
    if c.session_days:  # ultrasound guidance of the needles, coded as before 2015
        c.line(c.rng.choice(c.session_days), "76950", PROF, c.pc_mods())
        return True
    day = pick(c, c.fraction_days)
    if day is None:
        return False
    for doc in c.pc_guidance(day):
        c.remove(doc)
    c.line(day, c.rng.choice(("77421", "76950")), PROF, c.pc_mods())
    return True


def _v_deleted_2026(c: Course) -> bool:
    days = [d for d in c.fraction_days if d >= Y2026 and c.family in (F3D, F2D, FIMRT)]
    day = pick(c, days)
    if day is None:
        return False
    doc = c.delivery[day]
    doc["hcpcs"] = c.imrt_code if c.family == FIMRT else c.g_code
    return True


def _v_igrt_tc_2026(c: Course) -> bool:
    if c.family not in IGRT_ALLOWED or c.family == FSUP:
        return False
    days = [d for d in c.fraction_days if d >= Y2026 and d not in c.port_days]
    day = pick(c, days)
    if day is None:
        return False
    if c.hospital:
        c.line(day, "77387", INST)
    else:
        found = c.guidance_docs(day, "77387")
        if found:
            found[0]["modifiers"] = []
        else:
            c.line(day, "77387", PROF, [TC])
    return True


def _v_77387_pc_medicare(c: Course) -> bool:
    if c.accepts_pc_2025 or c.family not in IGRT_ALLOWED or c.family == FSUP:
        return False
    days = [d for d in c.fraction_days if d < Y2026 and d not in c.port_days]
    day = pick(c, days)
    if day is None:
        return False
    for doc in c.pc_guidance(day):
        c.remove(doc)
    c.line(day, "77387", PROF, [PC])
    return True


def _v_port_frequency(c: Course) -> bool:
    days = [d for k, d in enumerate(c.fraction_days, start=1) if k % 5 != 0]
    if not c.ports or not days:
        return False
    day = c.rng.choice(days)
    for doc in c.guidance_docs(day, "77387"):
        c.remove(doc)
    c.line(day, "77417", c.claim_type_tc())
    return True


def _v_port_with_verification_sim(c: Course) -> bool:
    day = pick(c, c.port_days)
    if day is None:
        return False
    for doc in c.guidance_docs(day, "77014"):
        c.remove(doc)
    c.bill(day, "77280")
    return True


def _v_port_modality(c: Course) -> bool:
    # Five fractions or more, so that the one unit is within the frequency.
    if c.family in PORT_ALLOWED or c.family == FBRACHY or c.n_fractions < 5:
        return False
    day = pick(c, c.fraction_days)
    if day is None:
        return False
    c.line(day, "77417", c.claim_type_tc())
    return True


def _v_superficial_skin(c: Course) -> bool:
    if c.family != FSUP:
        return False
    day = pick(c, c.fraction_days)
    if day is None:
        return False
    c.line(day, "G6001", PROF, c.pc_mods())
    return True


def _v_guidance_modality(c: Course) -> bool:
    day = pick(c, c.fraction_days)
    if day is None:
        return False
    if c.family == FPBT:
        code = "G6002"
    elif c.family == FIMRT:
        code = "G6001"
    elif c.family == F2D:
        code = "G6002"
    elif c.family in (FSBRT, FELECTRON):
        code = "77014"
    else:
        return False
    for doc in c.pc_guidance(day):
        c.remove(doc)
    c.line(day, code, PROF, c.pc_mods())
    return True


def _v_double_localization(c: Course) -> bool:
    if c.family not in CT_ALLOWED:
        return False
    days = [d for d in c.fraction_days if c.pc_guidance(d)]
    day = pick(c, days)
    if day is None:
        day = pick(c, c.fraction_days)
        if day is None:
            return False
        c.line(day, "77014", PROF, c.pc_mods(), 2)
    else:
        existing = c.pc_guidance(day)[0]["hcpcs"]
        code = "G6002" if existing == "77014" and c.family in KV_ALLOWED else "77014"
        c.line(day, code, PROF, c.pc_mods())
    return True


VIOLATIONS: Final[dict[str, Injector]] = {
    "port-image-extra-units": _v_port_units,
    "port-image-26": _v_port_professional,
    "port-image-with-77387": _v_port_with_igrt,
    "77014-with-simulation": _v_ct_with_simulation,
    "77387-tc-with-imrt": _v_igrt_tc_with_imrt,
    "g6017-extra-units": _v_intrafraction_units,
    "igrt-on-non-treatment-day": _v_igrt_without_fraction,
    "g6001-institutional": _v_ultrasound_institutional,
    "pos22-without-26": _v_hospital_missing_26,
    "deleted-77421-76950": _v_deleted_77421,
    "deleted-2026-delivery": _v_deleted_2026,
    "77387-tc-in-2026": _v_igrt_tc_2026,
    "77387-26-medicare-2025": _v_77387_pc_medicare,
    "port-image-too-often": _v_port_frequency,
    "port-image-with-77280": _v_port_with_verification_sim,
    "port-image-sbrt-electron": _v_port_modality,
    "igrt-superficial-skin": _v_superficial_skin,
    "guidance-wrong-modality": _v_guidance_modality,
    "two-localizations-one-fraction": _v_double_localization,
}
