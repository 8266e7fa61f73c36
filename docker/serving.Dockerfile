# Predictor and transformer image: `python -m serving` (its arguments pick the role).
# Build from the repository root:  docker build -f docker/serving.Dockerfile -t <ref> .

FROM python:3.11.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install "uv==0.13.9"
WORKDIR /app
# Dependencies first (cached while only sources change), then the project itself as an
# editable install pointing at /app, where the runtime stage puts the same sources.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY esteira/ esteira/
COPY esteira_cli/ esteira_cli/
COPY components/ components/
COPY pipelines/ pipelines/
COPY serving/ serving/
RUN uv sync --frozen --no-dev

FROM python:3.11.11-slim-bookworm
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --gid 10001 esteira \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin esteira
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY esteira/ esteira/
COPY esteira_cli/ esteira_cli/
COPY serving/ serving/
USER 10001:10001
# transformer :8080, predictor REST :8085, predictor gRPC :8086 (serving.* settings)
EXPOSE 8080 8085 8086
ENTRYPOINT ["python", "-m", "serving"]
