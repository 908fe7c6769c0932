# radsched-engine: builds and runs the engine as a non-root user.
#   docker build -t radsched-engine .
#   docker run -p 8661:8661 -p 9464:9464 -v radsched-data:/var/lib/radsched-engine radsched-engine
# With no RADSCHED_DATABASE_URL the engine runs its embedded PostgreSQL in the data volume.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY radsched_engine ./radsched_engine
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 radsched \
 && useradd --system --uid 10001 --gid radsched --home-dir /var/lib/radsched-engine \
      --shell /usr/sbin/nologin radsched \
 && mkdir -p /var/lib/radsched-engine /etc/radsched-engine \
 && chown radsched:radsched /var/lib/radsched-engine
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config /etc/radsched-engine/config
COPY channels /etc/radsched-engine/channels
WORKDIR /etc/radsched-engine
ENV RADSCHED_DATA_DIR=/var/lib/radsched-engine \
    RADSCHED_CHANNELS_DIR=/etc/radsched-engine/channels \
    RADSCHED_MLLP_LISTEN=0.0.0.0:8661 \
    RADSCHED_METRICS_LISTEN=0.0.0.0:9464 \
    PYTHONUNBUFFERED=1
USER radsched
VOLUME ["/var/lib/radsched-engine"]
EXPOSE 8661 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=3)"
ENTRYPOINT ["radsched-engine"]
CMD ["run", "--config", "/etc/radsched-engine/config/engine.yaml"]
