"""stream-app: the IGRT coding standard enforced on a stream of claims.

Layers, each a package (import-linter contracts in pyproject.toml):
- `core`: the contract and the rules, pure Python; imports no other layer.
- `stream`: the Kafka worker and everything Faust.
- `intake`: payers' 837 files to claim messages.
- `synth`: synthetic claim streams for tests and benchmarks.
- `sink`: the denial queue in PostgreSQL, the alerts' reference consumer.
- the commands on top (`cli`, `replay`, `clients`, `rules_listing`), which
  nothing imports.
"""

__version__ = "0.1.0"
