# syntax=docker/dockerfile:1.7
#
# One Dockerfile for the six binaries. The workspace is compiled once per platform; each
# runtime target (mirai-gateway, mirai-user, mirai-stock-data, mirai-prediction,
# mirai-analytics, mirai-notification) copies its binary into a distroless, non-root image.
#
#   docker buildx build --platform linux/amd64,linux/arm64 --target mirai-user \
#     -t europe-west1-docker.pkg.dev/PROJECT/mirai/mirai-user:TAG --push .
#
# Layers: the toolchain (chef), the dependency graph (planner: recipe.json, which changes only
# with Cargo.toml/Cargo.lock), the compiled dependencies (cook: cached until the recipe changes),
# then our own crates. The build stages run on the build machine's platform and cross-compile
# for the target one, so an arm64 image needs no emulation: its only steps are COPYs.
# Queries are not checked against a live database at build time (SQLX_OFFLINE): sqlx's query
# macros read each crate's committed .sqlx/ folder (scripts/sqlx-prepare writes them).
# docs/deploy-gke.md has the build and push commands (Cloud Build: cloudbuild.yaml).

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

# === chef: toolchain and cross compilers, on the build platform =====================================
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's packages, unpinned on purpose: the base image's release pins them, and security
# updates should land on rebuild.
# hadolint ignore=DL3008
RUN set -eux; \
    case "${TARGETARCH}" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86-64; libc=amd64 ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64; libc=arm64 ;; \
      *) echo "unsupported TARGETARCH '${TARGETARCH}' (amd64 or arm64)" >&2; exit 1 ;; \
    esac; \
    packages=(cmake make g++ pkg-config perl); \
    if [ "$(dpkg --print-architecture)" != "${libc}" ]; then \
      packages+=("gcc-${gnu}-linux-gnu" "g++-${gnu}-linux-gnu" "libc6-dev-${libc}-cross"); \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends "${packages[@]}"; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "${triple}"; \
    echo "${triple}" > /rust-target
# The C compilers and linkers of both targets (native names on the matching host).
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CXX_x86_64_unknown_linux_gnu=x86_64-linux-gnu-g++ \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    SQLX_OFFLINE=true
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# === planner: the dependency recipe ===================================================================
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# === builder: dependencies (cached by recipe), then the workspace ==================================
FROM chef AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --locked --target "$(cat /rust-target)" --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    set -eux; \
    triple="$(cat /rust-target)"; \
    cargo build --release --locked --target "${triple}" --bins; \
    mkdir -p /out/bin; \
    for binary in mirai-gateway mirai-user mirai-stock-data mirai-prediction mirai-analytics mirai-notification; do \
      cp "target/${triple}/release/${binary}" /out/bin/; \
    done; \
    if ! find services/prediction/models -name '*.onnx' 2>/dev/null | grep -q .; then \
      echo "services/prediction/models/ holds no .onnx model; the prediction image needs them" >&2; \
      exit 1; \
    fi; \
    cp -r services/prediction/models /out/models

# === runtime images, one target per binary =========================================================
# distroless "cc": glibc, libgcc and libstdc++ (what ring and aws-lc need), CA certificates,
# tzdata, no shell; "nonroot": uid/gid 65532. Its Debian release matches the builder's, so the
# binaries find the glibc they were linked against. Pin a digest in production builds.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="MiraiKakaku" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
ENV MIRAI_LOG_FORMAT=json

FROM runtime AS mirai-gateway
COPY --from=builder /out/bin/mirai-gateway /usr/local/bin/mirai-gateway
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/mirai-gateway"]

FROM runtime AS mirai-user
COPY --from=builder /out/bin/mirai-user /usr/local/bin/mirai-user
EXPOSE 50051 9091
ENTRYPOINT ["/usr/local/bin/mirai-user"]

FROM runtime AS mirai-stock-data
COPY --from=builder /out/bin/mirai-stock-data /usr/local/bin/mirai-stock-data
EXPOSE 50052 9092
ENTRYPOINT ["/usr/local/bin/mirai-stock-data"]

FROM runtime AS mirai-prediction
COPY --from=builder /out/bin/mirai-prediction /usr/local/bin/mirai-prediction
# The ONNX model artifacts (services/prediction/models/), read-only like the rest of the image.
COPY --from=builder /out/models /opt/mirai/models
ENV MIRAI_MODELS_DIR=/opt/mirai/models
EXPOSE 50053 9093
ENTRYPOINT ["/usr/local/bin/mirai-prediction"]

FROM runtime AS mirai-analytics
COPY --from=builder /out/bin/mirai-analytics /usr/local/bin/mirai-analytics
EXPOSE 50054 9094
ENTRYPOINT ["/usr/local/bin/mirai-analytics"]

FROM runtime AS mirai-notification
COPY --from=builder /out/bin/mirai-notification /usr/local/bin/mirai-notification
EXPOSE 50055 9095
ENTRYPOINT ["/usr/local/bin/mirai-notification"]
