"""The Kafka stream processor and everything Faust: the worker package
(`stream.worker`), the Faust table store, topics, Kafka I/O for the client
commands (`kafkaio`), health, Prometheus metrics and the settings read from the
environment. The version-pinned Faust overrides live in `stream.faust`.

May import `stream_app.core`. This file imports nothing, so that
`stream_app.stream.settings` and `stream_app.stream.kafkaio` can be used by
other commands (`publish`, `alerts`, intake, the sink) without loading the
worker."""
