#!/bin/sh
# Enable (but do not start) the service: the operator starts it once the config is right.
set -e
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  systemctl enable gluebox.service || true
  echo "gluebox installed: edit /etc/gluebox/config.yaml, then run: systemctl start gluebox"
fi
