# The stream-app worker image; docker compose builds it (README: Running with
# docker compose). RocksDB tables live in /var/lib/stream-app: mount a volume.
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/stream-app
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
RUN /opt/stream-app/bin/pip install .

FROM python:3.11.13-slim-bookworm
ENV PATH=/opt/stream-app/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STREAM_APP_DATA_DIR=/var/lib/stream-app \
    STREAM_APP_WEB_PORT=6066
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/stream-app stream-app
COPY --from=build /opt/stream-app /opt/stream-app
USER 10001
WORKDIR /var/lib/stream-app
VOLUME ["/var/lib/stream-app"]
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STREAM_APP_WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["stream-app"]
CMD ["worker"]
