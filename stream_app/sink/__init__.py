"""The denial queue in PostgreSQL (SPEC 11): the alerts topic's reference consumer."""
