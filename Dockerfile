# syntax=docker/dockerfile:1.7
# One image per Vigil binary, from the same Dockerfile:
#
#   docker build --build-arg SERVICE=auth-gateway -t vigil-auth-gateway:dev .
#
# SERVICE is one of auth-gateway, challenge, telephony, billing (the four
# services) or carrier-sim (the carrier simulator, development only). The
# image runs the binary as an unprivileged user (65532) with nothing else in
# it: no shell, no package manager. Its settings come from VIGIL_*
# environment variables (see deploy/k8s). Needs BuildKit (the default since
# Docker 23) for the cache mounts.

ARG RUST_VERSION=1

# ---------------------------------------------------------------- build
FROM rust:${RUST_VERSION}-bookworm AS builder
ARG SERVICE
WORKDIR /src
# Small, stripped release binaries; set here so local builds keep their
# debug-friendly profile.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_LTO=thin \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=4 \
    CARGO_TERM_COLOR=never
COPY . .
# The registry, git checkouts and target/ live in BuildKit cache mounts, so
# a rebuild (of this or another service) recompiles only what changed. The
# binary is copied out of the cache mount into the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,id=vigil-target,sharing=locked \
    set -eu; \
    case "${SERVICE:-}" in \
      auth-gateway|challenge|telephony|billing|carrier-sim) ;; \
      *) echo "build with --build-arg SERVICE=<auth-gateway|challenge|telephony|billing|carrier-sim> (got '${SERVICE:-}')" >&2; exit 1 ;; \
    esac; \
    cargo build --release --locked -p "vigil-${SERVICE}" --bin "vigil-${SERVICE}"; \
    install -D -m 0755 "target/release/vigil-${SERVICE}" /out/vigil-service

# ---------------------------------------------------------------- runtime
# glibc and libgcc (what a Rust binary links) plus CA certificates and
# tzdata; the :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.title="vigil-${SERVICE}" \
      org.opencontainers.image.description="Vigil MFA server: ${SERVICE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/vigil-service /usr/local/bin/vigil-service
USER 65532:65532
# Every binary drains in-flight work on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/vigil-service"]
