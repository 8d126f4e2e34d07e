# The otel-costs Collector image: the project's distribution (otelcol-otel-costs, with the costrollup
# processor), built from this checkout by collector/build.sh. Runs worker.yaml by default; the
# gateway runs the same image with gateway.yaml. Used by collector/docker-compose.yaml; build
# context is the repository root:
#   docker build -f collector/worker.Dockerfile -t otel-costs-collector:local .
# Go >= 1.26, as build.sh needs. build.sh also builds Jaeger (not copied: compose runs the official
# Jaeger image, which has the web UI).
FROM golang:1.26 AS build
WORKDIR /src
# Only what the build needs: changes to the Python package, tests or docs do not invalidate the layer.
COPY collector ./collector
RUN OTEL_COSTS_BIN_DIR=/out bash collector/build.sh

FROM debian:bookworm-slim
COPY --from=build /out/otelcol-otel-costs /usr/local/bin/otelcol-otel-costs
COPY collector/worker.yaml collector/gateway.yaml /etc/otel-costs/
USER 10001
# worker.yaml's OTLP gRPC/HTTP, health and metrics ports (gateway.yaml: 4317, 4318, 13133, 8888).
EXPOSE 4327 4328 13143 8898
ENTRYPOINT ["/usr/local/bin/otelcol-otel-costs"]
CMD ["--config=/etc/otel-costs/worker.yaml"]
