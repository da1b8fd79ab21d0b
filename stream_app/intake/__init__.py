"""Intake adapters: payers' files in, claim messages (SPEC 1.1) out."""
