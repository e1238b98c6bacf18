# One image for the three services; the command picks the service.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY tiendo ./tiendo
COPY services ./services
RUN pip install --no-cache-dir . && useradd --system tiendo
USER tiendo
ENTRYPOINT ["tiendo"]
