# The otel-costs worker image (`otel-costs serve`), built from this checkout.
# Used by collector/docker-compose.yaml; build context is the repository root:
#   docker build -f collector/worker.Dockerfile -t otel-costs-worker:local .
FROM python:3.11-slim
WORKDIR /src
# Only what the package build needs: changes to tests or docs do not invalidate the layer.
COPY pyproject.toml README.md ./
COPY otel_costs ./otel_costs
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
USER 10001
EXPOSE 4317 4318
ENTRYPOINT ["otel-costs"]
CMD ["serve", "--host=0.0.0.0"]
