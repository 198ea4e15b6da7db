# syntax=docker/dockerfile:1
# Conveyor: one image with every binary (consumer, worker, webhook, dashboard, producer, and the
# operator's CLI `conveyor`: `docker compose exec worker conveyor dead list webhooks`).
# docker-compose.yml runs each service from this image with its own command.

# Base images are pinned by digest (the multi-platform index digests of the official images, as
# docker-library/repo-info records them: rust 1.97.1-slim-bookworm and debian bookworm-slim share
# the same Debian layer), so a rebuild gets the same bytes; the tag beside each says what it is.

# ---- build: every workspace binary, once, in release mode ---------------------------------------
FROM rust:1.97.1-slim-bookworm@sha256:158b745f1b82dbeec7ea06e6b1617d6b005723bb66e6141cd2ddfee40d079ec3 AS builder
# cmake + pkg-config: native build helpers some TLS crates fall back to
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target dirs are build caches: a rebuild after a code change recompiles only
# what changed. The binaries are copied out of the cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/consumer target/release/worker target/release/webhook \
       target/release/dashboard target/release/producer target/release/conveyor /out/

# ---- runtime: slim Debian, non-root, curl for the healthchecks -----------------------------------
FROM debian:bookworm-slim@sha256:abd67ffcfa541b485a3dff59865ab629aa048a6c613e639d36e7456b0b229241 AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin conveyor \
 && mkdir -p /data/output \
 && chown -R conveyor:conveyor /data
COPY --from=builder /out/consumer /out/worker /out/webhook /out/dashboard /out/producer /out/conveyor /usr/local/bin/
USER conveyor
WORKDIR /data
ENV LOG_FORMAT=json RUST_LOG=info
# Each compose service picks its binary with `command:`.
CMD ["consumer"]
