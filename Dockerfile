# Crossdock container image.
#   docker build -t crossdock .                                  (plugins: segmentify insider)
#   docker build -t crossdock --build-arg PLUGINS="hull miso" .  (any directories of plugins/)
#   docker run -e CROSSDOCK_WRITE_KEY=... -p 8088:8088 -v crossdock:/var/lib/crossdock crossdock
# The default configuration (deploy/crossdock.toml) keeps the SQLite queue on the volume; mount
# your own at /etc/crossdock/crossdock.toml. tests/test_deploy.py runs this file's ENTRYPOINT,
# CMD and HEALTHCHECK in a plain virtualenv against a real daemon (see docs/deployment.md).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG PLUGINS="segmentify insider"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY core ./core
COPY plugins ./plugins
RUN python -m venv /opt/crossdock \
 && /opt/crossdock/bin/pip install -c constraints.txt ".[nats]" $(for p in $PLUGINS; do printf './plugins/%s ' "$p"; done)

FROM ${PYTHON_IMAGE}
# A fixed uid so volume ownership survives rebuilds.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/crossdock --create-home \
      --shell /usr/sbin/nologin crossdock
COPY --from=build /opt/crossdock /opt/crossdock
COPY deploy/crossdock.toml /etc/crossdock/crossdock.toml
ENV PATH=/opt/crossdock/bin:$PATH PYTHONUNBUFFERED=1
USER crossdock
WORKDIR /var/lib/crossdock
VOLUME /var/lib/crossdock
EXPOSE 8088
# SIGTERM drains (server.shutdown_timeout); give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/crossdock/bin/python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8088/ready', timeout=4).status != 200)"]
ENTRYPOINT ["/opt/crossdock/bin/crossdock", "run"]
CMD ["-c", "/etc/crossdock/crossdock.toml"]
