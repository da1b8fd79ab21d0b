"""The contract and the rules, pure Python: events and their decoding, the
model, the dated code lists, the rules (one module per family), the engine and
its parts (work, memos, scope, holds), event time, payer profiles, the `Store`
protocol with `MemoryStore`, and alert messages.

Replay and the Kafka worker share it. It imports nothing from another layer
of stream_app and nothing of Kafka, Faust or a database (an import-linter
contract in pyproject.toml checks this in `make lint`)."""
