#!/usr/bin/env bash
# Checks k8s/monitoring offline with Prometheus's own tool: the alerting rules parse and pass
# their unit tests (`promtool test rules`), and every query of the Grafana dashboard parses as
# PromQL (each is checked as a recording rule, Grafana's $__rate_interval read as 5m). That the
# queries find cola's metrics is checked against a real Prometheus scraping cola
# (cola/tests/metrics.rs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
monitoring=$root/k8s/monitoring
"$root/scripts/apt-install.sh" promtool:prometheus python3:python3

promtool check rules "$monitoring/alerts.yaml"
(cd "$monitoring" && promtool test rules alerts.test.yaml)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$monitoring/dashboard.json" "$work/dashboard-queries.yaml" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
rules = []
for panel in dashboard["panels"]:
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", "5m")
        record = "dashboard:panel_%d_%s" % (panel["id"], target["refId"].lower())
        rules.append({"record": record, "expr": expr})
if not rules:
    sys.exit("the dashboard has no queries")
# JSON is YAML: promtool reads it as a rule file.
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"), indent=2)
print("dashboard: %d queries in %d panels" % (len(rules), len(dashboard["panels"])))
PY
promtool check rules "$work/dashboard-queries.yaml"
