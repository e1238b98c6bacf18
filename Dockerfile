# One image for the three services and the demo; the command picks which
# (docker-compose.yml: `aggregator serve`, `ingest serve`, `notifier serve`, `demo run`).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY tiendo ./tiendo
COPY services ./services
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /var/lib/tiendo tiendo \
    && mkdir -p /var/lib/tiendo && chown tiendo /var/lib/tiendo
USER tiendo
# ingest, aggregator, notifier, and the demo webhook receiver
EXPOSE 8001 8002 8003 8009
ENTRYPOINT ["tiendo"]
