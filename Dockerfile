# One image for every stage: `switchboard ingest|process|sink`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contract contract
COPY ingest ingest
COPY processors processors
COPY runtime runtime
COPY sinks sinks
COPY switchboard switchboard
RUN pip install --no-cache-dir .
ENV SWITCHBOARD_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["switchboard"]
