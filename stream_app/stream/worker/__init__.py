"""`stream-app worker`: the engine as a Faust stream processor on Kafka.

This layer only moves data: it re-keys input by patient, reads and writes the
tables through `FaustStore`, calls the engine and sends the alerts. Every
decision is the engine's, so the worker and `stream-app replay` agree.

- `app`: the Faust app, its topics and tables, the parts wired together;
- `routing`: ingest and re-key by patient, event-time reports;
- `evaluation`: each re-keyed event or batch through the engine;
- `batching`: what batches need from Faust (commits, acknowledgements);
- `output`: alerts and dead letters, in the event's transaction;
- `process`: settings, topics, the Faust worker, exit codes, local state;
- `trace`: STREAM_APP_TRACE's offsets log.
"""

from stream_app.stream.worker.process import run_worker

__all__ = ["run_worker"]
