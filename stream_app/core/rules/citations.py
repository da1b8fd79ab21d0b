"""Headings of the standard's sections, quoted exactly, for rule citations."""

from typing import Final

STANDARD: Final = "Image Guidance – Radiation Oncology Coding Standard"
CBCT_77014: Final = (
    "Cone-Beam Computed Tomography (CBCT) Image-Guided Radiation Therapy, IGRT (CPT® Code 77014)"
)
IGRT_77387: Final = "Image-Guided Radiation Therapy, IGRT (CPT® Code 77387)"
STANDARDS_77387: Final = "Standards for CPT® Code 77387"
PORT_IMAGES_77417: Final = "Port Images Image-Guided Radiation Therapy, IGRT (CPT® Code 77417)"
STANDARDS_77417: Final = "Standards for CPT® Code 77417"
ULTRASOUND_G6001: Final = "Ultrasound Image-Guided Radiation Therapy, IGRT (HCPCS Code G6001)"
INTRAFRACTION_G6017: Final = (
    "Intra-Fraction Image-Guided Radiation Therapy, IGRT (HCPCS Code G6017)"
)
