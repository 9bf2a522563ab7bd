# amigate: the service in a container.
#   docker build -t amigate .
#   docker run -p 8000:8000 -v amigate-data:/data amigate
# Serial meters: add --device /dev/ttyUSB0 (the user is in the dialout group).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY drivers ./drivers
COPY simulators ./simulators
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AMIGATE_API_HOST=0.0.0.0 \
    AMIGATE_API_PORT=8000 \
    AMIGATE_DATABASE_URL=sqlite:////data/amigate.db
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --create-home --uid 10001 --groups dialout amigate \
    && mkdir /data && chown amigate /data
USER amigate
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"AMIGATE_API_PORT\"]}/healthz', timeout=4)"
# Migrate first (a no-op when current), then serve.
CMD ["sh", "-c", "amigate db upgrade && exec amigate run"]
