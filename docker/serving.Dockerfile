# Predictor and transformer image: `python -m serving` (its arguments pick the role).
# It installs the `serving` dependency group of uv.lock only: no kfp, no dev or test tools.
# Build from the repository root with docker/build.sh, or by hand:
#   docker build --network host -f docker/serving.Dockerfile --build-arg BASE_IMAGE=<ref> -t <ref> .
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

# ---- build: a .venv from uv.lock; thrown away (it alone sees the build host's CA bundle) ----
FROM ${BASE_IMAGE} AS build
COPY docker/.build/host-ca.crt /tmp/host-ca.crt
ENV SSL_CERT_FILE=/tmp/host-ca.crt \
    PIP_CERT=/tmp/host-ca.crt \
    UV_NATIVE_TLS=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m pip install --break-system-packages "uv==0.13.9"
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY docker/slim-venv.sh /tmp/slim-venv.sh
# --only-group: the group's packages at the lock's versions, not the project's own dependencies.
# Left out, as nothing on the serving path imports them (tests/test_containers.py imports the
# serving modules in the image): mypy (a dependency of feast's tooling), pillow, pycryptodome,
# and pyarrow's Flight RPC library.
RUN uv sync --frozen --no-dev --only-group serving \
      --no-install-package mypy --no-install-package pillow --no-install-package pycryptodome \
 && sh /tmp/slim-venv.sh /app/.venv \
 && rm -f /app/.venv/lib/python3*/site-packages/pyarrow/libarrow_flight.so* \
          /app/.venv/lib/python3*/site-packages/pyarrow/_flight*.so

# ---- runtime: the .venv and the sources serving imports, run as uid 10001 ------------------
FROM ${BASE_IMAGE}
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app \
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
# the use cases: each server reads its use case's settings and contract, the transformer its
# Feast definitions (ESTEIRA_USE_CASE picks one; their data/ stays out, see .dockerignore)
COPY feature_repo/ feature_repo/
RUN python3 -m compileall -q esteira serving feature_repo
USER 10001:10001
# transformer :8080, predictor REST :8085, predictor gRPC :8086 (serving.* settings)
EXPOSE 8080 8085 8086
ENTRYPOINT ["python", "-m", "serving"]
