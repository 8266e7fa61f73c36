#!/usr/bin/env bash
# Build the component image and the serving image with references from the esteira config.
#   ./docker/build.sh [CONFIG.yaml]      (ESTEIRA_IMAGE__* environment variables also apply)
# component: <registry>/<name>:<tag>      docker/Dockerfile
# serving:   <registry>/<name>-serving:<tag>  docker/serving.Dockerfile
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
if [[ ! -x "$PY" ]]; then
  echo "error: $PY not found; run \`make setup\` first" >&2
  exit 1
fi

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "error: no Docker engine here (\`docker info\` failed); images are built in CI where one exists" >&2
  exit 1
fi

refs=$(
  "$PY" - "${1:-}" <<'PYEOF'
import sys
from esteira.config import load_settings
image = load_settings(sys.argv[1] or None).image
base = f"{image.registry.rstrip('/')}/{image.name}"
print(image.reference, f"{base}-serving:{image.tag}")
PYEOF
)
read -r COMPONENT SERVING <<<"$refs"

echo "== building $COMPONENT"
docker build -f docker/Dockerfile -t "$COMPONENT" .
echo "== building $SERVING"
docker build -f docker/serving.Dockerfile -t "$SERVING" .
echo "built: $COMPONENT $SERVING"
