# The AtomChat gRPC server. Envoy runs in its own container in front of it
# (docker-compose.yml); the web client's files are mounted there.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY . /tmp/atomchat
RUN pip install /tmp/atomchat \
    && rm -rf /tmp/atomchat \
    && useradd --create-home --uid 10001 atomchat

USER atomchat
WORKDIR /home/atomchat
ENV ATOMCHAT_HOST=0.0.0.0 \
    ATOMCHAT_GRPC_PORT=50051 \
    ATOMCHAT_DATA_DIR=/home/atomchat/data

EXPOSE 50051
# DATABASE_URL is required here: without it `serve` would start an embedded
# PostgreSQL inside the container.
CMD ["atomchat", "serve", "--no-envoy"]
