"""Service and EndpointSlice objects for the proxy tests (what the API server stores)."""

from __future__ import annotations

from typing import Any

Object = dict[str, Any]


def service(name: str, cluster_ip: str, *ports: tuple[str, int, str], namespace: str = "default",
            type: str = "ClusterIP", node_ports: tuple[int, ...] = (), **spec: Any) -> Object:
    port_list = [{"name": n, "port": p, "protocol": proto, "targetPort": p} for n, p, proto in ports]
    for port, node_port in zip(port_list, node_ports, strict=False):
        port["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
            "spec": {"type": type, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": port_list,
                     "sessionAffinity": "None", **spec}}


def endpoint(ip: str, node: str = "n1", ready: bool = True, serving: bool | None = None,
             terminating: bool = False) -> Object:
    conditions: Object = {"ready": ready, "serving": ready if serving is None else serving,
                          "terminating": terminating}
    return {"addresses": [ip], "conditions": conditions, "nodeName": node}


def endpoint_slice(service_name: str, endpoints: list[Object], *ports: tuple[str, int, str],
                   namespace: str = "default", name: str = "") -> Object:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{service_name}-abcde", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}
