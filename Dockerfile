# clickstamp in a container.
#
#   docker build -t clickstamp .
#   docker run -d --name clickstamp \
#     -p 8080:8080 -p 8443:8443 -p 127.0.0.1:9091:9091 \
#     -v clickstamp-data:/var/lib/clickstamp \
#     -v /etc/clickstamp:/etc/clickstamp:ro \
#     --env-file /etc/clickstamp/clickstamp.env \
#     clickstamp
#
# /etc/clickstamp/clickstamp.toml is yours (start from config/production.example.toml);
# in a container its listeners must bind 0.0.0.0 to be reachable through -p. The store
# lives on the volume. See docs/deployment.md.

# --- build: the workspace, with cmake and a C compiler for the bundled zlib-ng and
# SQLite ---
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake gcc g++ make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p clickstamp \
    && install -m 0755 target/release/clickstamp /usr/local/bin/clickstamp

# --- runtime: the binary, CA roots for https upstreams, relays and PostgreSQL TLS ---
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 clickstamp \
    && useradd --system --uid 10001 --gid clickstamp --home-dir /var/lib/clickstamp \
       --shell /usr/sbin/nologin clickstamp \
    && install -d -o clickstamp -g clickstamp -m 0750 /var/lib/clickstamp \
    && install -d -m 0755 /etc/clickstamp
COPY --from=build /usr/local/bin/clickstamp /usr/local/bin/clickstamp
COPY config/production.example.toml /etc/clickstamp/clickstamp.example.toml
USER clickstamp:clickstamp
WORKDIR /var/lib/clickstamp
# The SQLite store (store.path = "/var/lib/clickstamp/clickstamp.sqlite").
VOLUME ["/var/lib/clickstamp"]
# Main listener (HTTP), main listener (HTTPS, [tls]), admin listener (/metrics, /api).
EXPOSE 8080 8443 9091
ENV RUST_LOG=info
CMD ["clickstamp","serve","--config","/etc/clickstamp/clickstamp.toml"]
