# The Spark image: the Spark feature engine's SparkApplications (manifests/spark/,
# esteira/spark_submit.py) run in it. Java from Debian (openjdk-17-jre-headless), pyspark
# (which carries Spark's jars and spark-submit) from the lock's `spark` group, plus the
# component image's dependencies and esteira's sources. The component and serving images
# never install the `spark` group: they stay the size they were.
# Build from the repository root with `ESTEIRA_SPARK_IMAGE=1 docker/build.sh` (make images-spark).
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
RUN uv sync --frozen --no-dev --group spark --no-install-project && sh /tmp/slim-venv.sh /app/.venv
# optional jars on Spark's classpath (hadoop-aws + the AWS SDK bundle for s3a:// without Maven,
# docker/spark-jars/README.md); none there: the SparkApplication's deps.packages fetches them
COPY docker/spark-jars/ /tmp/spark-jars/
RUN for jar in /tmp/spark-jars/*.jar; do \
      [ ! -e "$jar" ] || cp "$jar" /app/.venv/lib/python3.11/site-packages/pyspark/jars/; \
    done

# ---- runtime: Java from Debian, the .venv, the sources; runs as uid 10001 ------------------
FROM ${BASE_IMAGE}
# slim and minbase bases have no /usr/share/man/man1, where openjdk's postinst links java.1
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      openjdk-17-jre-headless procps tini \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    SPARK_HOME=/app/.venv/lib/python3.11/site-packages/pyspark \
    PYSPARK_PYTHON=/app/.venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/app/.venv/bin/python
RUN groupadd --gid 10001 esteira \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin esteira
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY esteira/ esteira/
COPY feature_repo/ feature_repo/
COPY manifests/spark/ manifests/spark/
COPY docker/spark-entrypoint.sh /opt/entrypoint.sh
RUN chmod 755 /opt/entrypoint.sh && python3 -m compileall -q esteira feature_repo
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/entrypoint.sh"]
