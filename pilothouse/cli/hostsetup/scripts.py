"""The helper scripts a host gets next to its units (the seed's ``/opt/bin`` helpers).

They are plain bash with curl, both present on a stock Debian host (cloud-config installs curl), and
the tests run them as written here against a real server.
"""

from __future__ import annotations

__all__ = ["REGISTER_NODE", "WAIT_HEALTHZ", "WUPIAO"]

# The seed's wupiao made an HTTP HEAD request to http://HOST:PORT; a TCP connect also waits for an
# HTTPS port (the API server's 6443) and needs no HTTP answer. A deadline turns "never" into a unit
# failure that Restart= retries, instead of a start job that hangs forever.
WUPIAO = r"""#!/bin/bash
# [w]ait [u]ntil [p]ort [i]s [a]ctually [o]pen: wupiao HOST:PORT [SECONDS]
set -u
target="${1:?usage: wupiao HOST:PORT [SECONDS]}"
host="${target%:*}"
port="${target##*:}"
deadline=$(( SECONDS + ${2:-600} ))
until (exec 3<>"/dev/tcp/${host}/${port}") 2>/dev/null; do
  if [ "${SECONDS}" -ge "${deadline}" ]; then
    echo "wupiao: ${target} is not open" >&2
    exit 1
  fi
  sleep 1 && echo .
done
exit 0
"""

# The seed's controller-manager ExecStartPre, as a script: poll /healthz until the body is exactly
# "ok". --insecure because this only reads the health word: the agent itself checks the server's CA
# (against the join token's hash) before it sends anything.
WAIT_HEALTHZ = r"""#!/bin/bash
# Wait until URL/healthz answers "ok": wait-healthz URL [SECONDS]
set -u
url="${1:?usage: wait-healthz URL [SECONDS]}"
deadline=$(( SECONDS + ${2:-600} ))
result=""
until result=$(curl --fail --silent --insecure --max-time 5 "${url%/}/healthz") && [ "${result}" = ok ]; do
  if [ "${SECONDS}" -ge "${deadline}" ]; then
    echo "wait-healthz: ${url%/}/healthz answered '${result}', not 'ok'" >&2
    exit 1
  fi
  sleep 2
done
echo "${result}"
"""

# The seed's register_node.sh, unchanged but for where kubectl lives ({kubectl}).
REGISTER_NODE = r"""#!/bin/sh -xe
node_id="${1}"
master_url="${2}"
env_label="${3}"
until healthcheck=$(curl --fail --silent "${master_url}/healthz")
do sleep 2
done
test -n "${healthcheck}"
test "${healthcheck}" = "ok"
printf '{
  "id": "%s",
  "kind": "Minion",
  "apiVersion": "v1beta1",
  "labels": { "environment": "%s", "host": "azure", "name": "%s" }
  }' "${node_id}" "${env_label}" "${node_id}" \
  | {kubectl} create -s "${master_url}" -f -
if [ $? -ne 0 ]
  then echo "Failed registering node, already registered?"
  else echo "Successfully registered node"
fi
"""
