# One image for the local stack's Python processes: the REST gateway, the gRPC host and the
# Azure OpenAI simulators (docker-compose.yml picks the command). Build context: repository root.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY core/ core/
COPY protos/ protos/
COPY http_api/ http_api/
COPY grpc_host/ grpc_host/
COPY simulator/ simulator/
COPY config/ config/

RUN useradd --create-home --uid 10001 gateway
USER 10001

CMD ["python", "-m", "http_api", "--host", "0.0.0.0", "--port", "8000"]
