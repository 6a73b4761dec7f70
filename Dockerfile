# syntax=docker/dockerfile:1
# The runtime-host image (k8s/runtime-host/): the host binary, spin.toml (the
# services composed in one process, the default command) and spin.pods.toml
# (each service in a pod of its own, as the Deployments run it), the
# components and their precompiled code, running as a non-root user on a
# read-only root filesystem (state goes to the volume at /var/lib/daytrade).
#
#   docker build -t ghcr.io/daytrade/runtime-host:0.1.0 .
#
# Not built in CI (this project's CI machine has no container engine).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# rust-toolchain.toml names the wasm32-wasip2 target; `rustup show` installs it.
COPY rust-toolchain.toml ./
RUN rustup show active-toolchain || rustup toolchain install
COPY . .
RUN make components \
 && cargo build --release -p runtime-host \
 && ./target/release/runtime-host compile -f spin.toml --cache-dir /out/compiled \
 && ./target/release/runtime-host compile -f spin.pods.toml --cache-dir /out/compiled

FROM debian:bookworm-slim
# checkov:skip=CKV_DOCKER_2:Kubernetes probes the admin port (/readyz, /healthz); a Docker HEALTHCHECK is ignored there and would need a client in the image
# ca-certificates is left unpinned on purpose: its security updates are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /src/target/release/runtime-host /usr/local/bin/runtime-host
COPY --from=build /src/spin.toml /app/spin.toml
COPY --from=build /src/spin.pods.toml /app/spin.pods.toml
COPY --from=build /src/config /app/config
COPY --from=build /src/import /app/import
COPY --from=build /src/target/wasm32-wasip2/component/ /app/target/wasm32-wasip2/component/
COPY --from=build /out/compiled /app/compiled
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["runtime-host"]
CMD ["up", "--from=/app/spin.toml", "--listen=0.0.0.0:8080", "--admin-listen=0.0.0.0:9090", \
     "--state-dir=/var/lib/daytrade", "--cache-dir=/app/compiled"]
