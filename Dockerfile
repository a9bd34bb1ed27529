# syntax=docker/dockerfile:1
# Multi-stage build of the one `reseller` binary (API, worker, simulator, migrations, CLI).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# sqlx runs offline (see .cargo/config.toml): no database is needed to build.
RUN cargo build --release --locked -p reseller \
 && cp target/release/reseller /usr/local/bin/reseller

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent reseller
COPY --from=build /usr/local/bin/reseller /usr/local/bin/reseller
USER reseller
# In a container, listen on every interface. Metrics are on their own port (9090 for the API,
# 9091 for a worker), never the public API port: publish them only to your scrapers.
ENV RESELLER_API__LISTEN=0.0.0.0:8080 \
    RESELLER_API__METRICS_LISTEN=0.0.0.0:9090 \
    RESELLER_WORKER__METRICS_LISTEN=0.0.0.0:9091 \
    LOG_FORMAT=json
EXPOSE 8080 9090 9091
ENTRYPOINT ["reseller"]
CMD ["api"]
