#!/usr/bin/env bash
# Virtualenvs for `python -m bench` scenario 3 (vs-otel): one per competitor, because
# their pins conflict with each other. Each also gets llmtap (editable) for the fixtures.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
make_venv() {  # dir, packages...
  local dir="$1"; shift
  "$PY" -m venv "$dir"
  "$dir/bin/pip" install -q -e "$ROOT" httpx2 openai opentelemetry-sdk "$@"
}
make_venv /tmp/bench-otelv2 "opentelemetry-instrumentation-openai-v2==2.4b0" "opentelemetry-util-genai==1.1b0"
make_venv /tmp/bench-openllmetry opentelemetry-instrumentation-openai
echo "ok: /tmp/bench-otelv2 /tmp/bench-openllmetry"
