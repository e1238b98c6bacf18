# Two images from one file. `service` holds the product wheel only (ingest, aggregator,
# notifier; the command picks which: `aggregator serve`, `ingest serve`, `notifier serve`).
# `demo` adds devtools/ (the Hà Nội seed, traffic and webhook receiver of docker-compose.yml),
# which the wheel never contains.
FROM python:3.11-slim AS service
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY tiendo ./tiendo
COPY services ./services
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /var/lib/tiendo tiendo \
    && mkdir -p /var/lib/tiendo && chown tiendo /var/lib/tiendo
USER tiendo
EXPOSE 8001 8002 8003
ENTRYPOINT ["tiendo"]

FROM service AS demo
COPY devtools ./devtools
# the demo webhook receiver
EXPOSE 8009
ENTRYPOINT ["python", "-m", "devtools"]
