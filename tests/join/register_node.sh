#!/bin/sh -xe
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
  | /opt/bin/kubectl create -s "${master_url}" -f -
if [ $? -ne 0 ]
  then echo "Failed registering node, already registered?"
  else echo "Successfully registered node"
fi
