# The AtomChat gRPC server. Envoy runs in its own container in front of it
# (docker-compose.yml); the web client's files are mounted there. The Python is
# the version the tests run on (tests/edge/test_compose.py checks it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The service alone, at the versions pinned in constraints.txt: without the
# `local` extra (the embedded PostgreSQL and Envoy), which the image never runs.
COPY . /tmp/atomchat
RUN pip install -c /tmp/atomchat/constraints.txt /tmp/atomchat \
    && rm -rf /tmp/atomchat \
    && useradd --create-home --uid 10001 atomchat

USER atomchat
WORKDIR /home/atomchat
ENV ATOMCHAT_HOST=0.0.0.0 \
    ATOMCHAT_GRPC_PORT=50051 \
    ATOMCHAT_DATA_DIR=/home/atomchat/data

EXPOSE 50051
# DATABASE_URL and ATOMCHAT_JWT_SECRET are required here: the image has no
# embedded PostgreSQL, and a server listening on 0.0.0.0 makes no secret.
CMD ["atomchat", "serve", "--no-envoy"]
