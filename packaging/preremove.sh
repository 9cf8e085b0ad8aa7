#!/bin/sh
# Stop the service on removal; workloads and data stay until `gluebox cleanup --purge`.
set -e
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl stop gluebox.service || true
  systemctl disable gluebox.service || true
fi
