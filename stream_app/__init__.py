"""stream-app: a streaming claim-event processor that enforces the
radiation-oncology image guidance (IGRT) coding standard."""

__version__ = "0.1.0"
