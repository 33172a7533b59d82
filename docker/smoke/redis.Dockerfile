# Smoke-run stand-in for redis:7 (scripts/compose_smoke.sh; docker/compose.smoke.yml): Debian
# bookworm's redis-server (7.0) on the Debian base. Like the official image it runs in /data and turns
# protected mode off when started without a config file (the compose network is the only client).
ARG BASE_IMAGE=alabel-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$1\" = redis-server ]; then shift; exec redis-server --protected-mode no \"$@\"; fi; exec \"$@\"", "--"]
CMD ["redis-server"]
