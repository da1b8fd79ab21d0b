"""Payers' files to claim messages: X12 837P/837I interchanges (`x12`,
`claims`, `elements`), the site map (`sites`), and `stream-app intake x12`
(`run`). May import `stream_app.core` (events) and, to publish,
`stream_app.stream.settings` and `stream_app.stream.kafkaio`."""
