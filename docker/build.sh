#!/usr/bin/env bash
# Build the component image and the serving image with references from the esteira config.
#   ./docker/build.sh [CONFIG.yaml]      (ESTEIRA_IMAGE__* environment variables also apply)
# component: <registry>/<name>:<tag>          docker/Dockerfile
# serving:   <registry>/<name>-serving:<tag>  docker/serving.Dockerfile
# spark:     <registry>/<name>-spark:<tag>    docker/spark.Dockerfile (ESTEIRA_SPARK_IMAGE=1 only)
# base:      image.base: pulled, or built from Debian packages when no registry answers
#
# Works with no registry reachable: docker/engine.sh finds or starts an engine (installing
# Debian's docker.io when needed), docker/base.sh provides the base. Builds use the legacy
# builder (no buildx here) with --network host (the private daemon has no bridge).
# The build host's CA bundle ($ESTEIRA_BUILD_CA, else $SSL_CERT_FILE, else Debian's bundle) is
# copied to docker/.build/host-ca.crt and read only by the build stages, which are discarded.
# Writes dist/images/images.json (references, ids, sizes, build seconds; $ESTEIRA_IMAGES_OUT).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
if [[ ! -x "$PY" ]]; then
  echo "error: $PY not found; run \`make setup\` first" >&2
  exit 1
fi

if [[ ${ESTEIRA_ENGINE_START:-1} == 0 ]]; then
  # only use an engine that already answers (tests, CI with a given DOCKER_HOST)
  host=$(docker/engine.sh status) || {
    echo "error: no Docker engine answers and ESTEIRA_ENGINE_START=0; start one (docker/engine.sh up) or set DOCKER_HOST" >&2
    exit 1
  }
else
  host=$(docker/engine.sh up | tail -n 1)
fi
export "${host?}"
export DOCKER_BUILDKIT=0

refs=$(
  "$PY" - "${1:-}" <<'PYEOF'
import sys
from esteira.config import load_settings
image = load_settings(sys.argv[1] or None).image
print(image.reference, image.serving_reference, image.base, image.spark_reference)
PYEOF
)
read -r COMPONENT SERVING BASE SPARK <<<"$refs"

docker/base.sh "$BASE"

CA=${ESTEIRA_BUILD_CA:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
if [[ ! -s $CA ]]; then
  echo "error: no CA bundle at $CA; set ESTEIRA_BUILD_CA to the build host's bundle" >&2
  exit 1
fi
mkdir -p docker/.build
cp "$CA" docker/.build/host-ca.crt

OUT=${ESTEIRA_IMAGES_OUT:-dist/images}
mkdir -p "$OUT"
started=$(date +%s)
PAIRS=("docker/Dockerfile=$COMPONENT" "docker/serving.Dockerfile=$SERVING")
# the Spark image (features.engine: spark on a cluster) only when asked: it is large (Java)
[[ ${ESTEIRA_SPARK_IMAGE:-0} == 1 ]] && PAIRS+=("docker/spark.Dockerfile=$SPARK")
for pair in "${PAIRS[@]}"; do
  file=${pair%%=*} ref=${pair#*=}
  echo "== building $ref ($file, FROM $BASE)"
  t0=$(date +%s)
  log=$OUT/$(basename "$file").log
  if ! docker build --network host --build-arg "BASE_IMAGE=$BASE" -f "$file" -t "$ref" . 2>&1 \
    | tee "$log" | grep --line-buffered -E '^Step [0-9]+/[0-9]+ : (FROM|RUN|COPY --from)'; then
    echo "error: building $ref failed; the end of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  echo "   $ref built in $(( $(date +%s) - t0 )) s"
done
seconds=$(( $(date +%s) - started ))

"$PY" - "$COMPONENT" "$SERVING" "$BASE" "$seconds" "$OUT" "${ESTEIRA_SPARK_IMAGE:-0}" "$SPARK" <<'PYEOF'
import json, subprocess, sys
component, serving, base, seconds, out, with_spark, spark = sys.argv[1:]
rows = []
roles = [("component", component), ("serving", serving), ("base", base)]
roles += [("spark", spark)] if with_spark == "1" else []
for role, ref in roles:
    fields = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}} {{.Size}}", ref],
                         check=True, capture_output=True, text=True).stdout.split()
    rows.append({"role": role, "reference": ref, "id": fields[0], "size_mb": round(int(fields[1]) / 1e6)})
with open(f"{out}/images.json", "w") as f:
    json.dump({"images": rows, "build_seconds": int(seconds)}, f, indent=2)
for r in rows:
    print(f"{r['role']:<10} {r['reference']:<50} {r['size_mb']:>6} MB  {r['id']}")
print(f"built in {seconds} s; engine {__import__('os').environ['DOCKER_HOST']}")
PYEOF
