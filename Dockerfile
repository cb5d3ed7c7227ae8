# Multi-stage build: compile in the Rust image, run as a non-root user in a slim image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin vectune

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/vectune vectune \
    && mkdir -p /data && chown vectune /data
COPY --from=build /src/target/release/vectune /usr/local/bin/vectune
COPY config/default.toml /etc/vectune/default.toml
USER vectune
VOLUME ["/data"]
EXPOSE 8080
ENV VECTUNE_BIND=0.0.0.0:8080 VECTUNE_STORE=/data
ENTRYPOINT ["vectune"]
CMD ["serve"]
