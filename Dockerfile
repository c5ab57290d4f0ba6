# reconciler: the GitOps daemon of this repository, as a container image.
#
#   docker build -t reconciler .                       # anywhere with a registry
#   make image                                         # here: buildah + a debootstrap base
#
# BASE_IMAGE must be a Debian-based image with python3 (3.11+, with venv) on PATH: the
# official slim image by default; `.ci/image` passes a Debian rootfs made by debootstrap.
# EXTRAS=embedded keeps `reconciler demo` (the embedded AWS emulator) in the image, ~110 MB
# of it; build with `--build-arg EXTRAS=` for a daemon-only image. See docs/decisions/0004.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG EXTRAS=embedded
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The lock first: dependencies stay cached while only the code changes.
COPY constraints.txt ./
RUN python3 -m venv /opt/reconciler \
 && /opt/reconciler/bin/pip install --no-cache-dir -c constraints.txt pip setuptools wheel
COPY pyproject.toml ./
COPY reconciler ./reconciler
# Every version comes from constraints.txt; --no-build-isolation builds with the pinned tools.
RUN /opt/reconciler/bin/pip install --no-cache-dir --no-build-isolation -c constraints.txt \
        ".${EXTRAS:+[${EXTRAS}]}" \
 && /opt/reconciler/bin/pip uninstall -y -q pip setuptools wheel \
 && /opt/reconciler/bin/python -m compileall -q /opt/reconciler/lib \
 && /opt/reconciler/bin/reconciler --version

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="reconciler" \
      org.opencontainers.image.description="GitOps daemon that rolls new machine images out to CloudFormation stacks: migrations first, then the API servers." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/deploy.md"

# git (and ssh for git@ URLs) is what the daemon reads its specs with. Versions float with
# the base image's Debian release, which BASE_IMAGE pins; pinning them here would break the
# build on every Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 reconciler \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/reconciler \
        --shell /usr/sbin/nologin reconciler \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/reconciler

COPY --from=build /opt/reconciler /opt/reconciler

# The root filesystem can be read-only: everything written goes to the state volume
# (git clone, SQLite store, HOME for git and ssh) or to /tmp (an emptyDir in the chart).
ENV PATH=/opt/reconciler/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/reconciler \
    RECONCILER_STATE_DIR=/var/lib/reconciler \
    RECONCILER_LISTEN=0.0.0.0:9108 \
    RECONCILER_LOG_FORMAT=json
VOLUME ["/var/lib/reconciler"]
WORKDIR /var/lib/reconciler
USER 10001:10001
EXPOSE 9108

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; port = os.environ.get('RECONCILER_LISTEN', ':9108').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["reconciler"]
CMD ["run"]
