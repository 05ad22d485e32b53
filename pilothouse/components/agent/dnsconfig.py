"""A pod's resolv.conf by its ``dnsPolicy``, as the kubelet forms it (``pkg/kubelet/network/dns``).

- ``ClusterFirst`` (the default): the cluster DNS as the only nameserver, the search path
  ``<ns>.svc.<domain> svc.<domain> <domain>`` followed by the host's, ``options ndots:5``. A
  ``hostNetwork`` pod with ``ClusterFirst`` gets ``Default``; ``ClusterFirstWithHostNet`` keeps the
  cluster DNS. Without a cluster DNS the kubelet falls back to ``Default`` with a
  ``MissingClusterDNS`` warning, and so do we.
- ``Default``: the host's resolv.conf (kubelet's ``--resolv-conf``).
- ``None``: nothing but ``spec.dnsConfig``.

``spec.dnsConfig`` is then appended (nameservers and searches without duplicates, options by name,
the pod's winning) and the result cut to the API's limits (3 nameservers; 32 search domains of at
most 253 characters, 2048 in all) with a ``DNSConfigForming`` warning. The file is written as
containerd's CRI writes it: ``search``, ``nameserver`` lines, ``options``.

One difference from the kubelet, on purpose: a pod on the agent's bridge has its own network
namespace, where a host's loopback resolver (systemd-resolved's 127.0.0.53) means nothing, so
loopback nameservers are dropped for it (kubeadm points the kubelet at systemd's upstream file
instead, which a single flag cannot do for every host).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pilothouse.components.agent.podnet import hosts_file
from pilothouse.machinery.meta import Object

__all__ = ["DNSConfig", "host_resolv_conf", "name_files", "parse_resolv_conf", "pod_dns_config", "pod_hostname",
           "sandbox_hostname"]


MAX_NAMESERVERS = 3  # validation.MaxDNSNameservers
MAX_SEARCH_PATHS = 32  # validation.MaxDNSSearchPathsExpanded
MAX_SEARCH_CHARS = 2048  # validation.MaxDNSSearchListCharsExpanded
MAX_DOMAIN = 253  # DNS1123SubdomainMaxLength


@dataclass
class DNSConfig:
    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    #: (reason, message) warnings for the pod's events
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> str:
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines += [f"nameserver {server}" for server in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)


def parse_resolv_conf(text: str) -> DNSConfig:
    """nameserver lines accumulate; the last search and options lines win (kubelet's parseResolvConf)."""
    config = DNSConfig()
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            config.nameservers.append(fields[1])
        elif fields[0] == "search":
            config.searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            config.options = fields[1:]
    return config


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(existing: list[str], wanted: list[Object]) -> list[str]:
    merged: dict[str, str] = {}
    for option in existing:
        name, _, value = option.partition(":")
        merged[name] = value
    for pod_option in wanted:
        merged[str(pod_option.get("name", ""))] = str(pod_option.get("value") or "")
    return [f"{name}:{value}" if value else name for name, value in merged.items()]


def _fit_searches(searches: list[str], config: DNSConfig) -> list[str]:
    fitted = [s for s in searches[:MAX_SEARCH_PATHS] if len(s) <= MAX_DOMAIN]
    while fitted and len(" ".join(fitted)) > MAX_SEARCH_CHARS:
        fitted.pop()
    if fitted != searches:
        config.warnings.append(("DNSConfigForming", "Search Line limits were exceeded, some search paths have "
                                f"been omitted, the applied search line is: {' '.join(fitted)}"))
    return fitted


def pod_dns_config(pod: Object, host: DNSConfig, cluster_dns: list[str], cluster_domain: str) -> DNSConfig:
    """The pod's resolver configuration; ``host`` is the node's resolv.conf, parsed."""
    spec = pod.get("spec") or {}
    host_network = bool(spec.get("hostNetwork"))
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    base = DNSConfig(
        nameservers=[s for s in host.nameservers if host_network or not s.startswith(("127.", "::1"))],
        searches=list(host.searches), options=list(host.options))
    cluster = policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network)
    if policy == "None":
        base = DNSConfig()
    elif cluster and cluster_dns:
        namespace = pod["metadata"].get("namespace") or "default"
        searches = base.searches
        if cluster_domain:
            searches = _unique([f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain,
                                *searches])
        base = DNSConfig(nameservers=list(cluster_dns), searches=searches, options=["ndots:5"])
    elif cluster:
        message = ('kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" '
                   'policy. Falling back to "Default" policy.')
        base.warnings.append(("MissingClusterDNS", message))
    extra = spec.get("dnsConfig")
    if extra:
        base.nameservers = _unique(base.nameservers + list(extra.get("nameservers") or ()))
        base.searches = _unique(base.searches + list(extra.get("searches") or ()))
        base.options = _merge_options(base.options, list(extra.get("options") or ()))
    if len(base.nameservers) > MAX_NAMESERVERS:
        base.nameservers = base.nameservers[:MAX_NAMESERVERS]
        base.warnings.append(("DNSConfigForming", "Nameserver limits were exceeded, some nameservers have been "
                              f"omitted, the applied nameserver line is: {' '.join(base.nameservers)}"))
    base.searches = _fit_searches(base.searches, base)
    return base


def pod_hostname(pod: Object, cluster_domain: str) -> tuple[str, str]:
    """(hostname, domain) as the kubelet's GeneratePodHostNameAndDomain: ``spec.hostname`` or the pod's
    name cut to 63 characters (without a trailing ``-`` or ``.``); with ``spec.subdomain`` the domain
    ``<subdomain>.<ns>.svc.<cluster domain>``, so the pod's FQDN is what the headless Service named
    by the subdomain resolves."""
    spec, metadata = pod.get("spec") or {}, pod["metadata"]
    hostname = str(spec.get("hostname") or str(metadata["name"])[:63].rstrip("-."))
    subdomain = spec.get("subdomain")
    domain = f"{subdomain}.{metadata.get('namespace') or 'default'}.svc.{cluster_domain}" \
        if subdomain and cluster_domain else ""
    return hostname, domain


def sandbox_hostname(pod: Object, cluster_domain: str) -> str:
    """The kernel hostname of the pod: its hostname, or its FQDN with ``spec.setHostnameAsFQDN``
    (cut to the kernel's 64 characters, where the kubelet refuses the pod instead)."""
    hostname, domain = pod_hostname(pod, cluster_domain)
    if (pod.get("spec") or {}).get("setHostnameAsFQDN") and domain:
        return f"{hostname}.{domain}"[:64]
    return hostname


def host_resolv_conf(path: str) -> DNSConfig:
    """The node's resolver configuration (kubelet's ``--resolv-conf``; empty or unreadable: none)."""
    try:
        return parse_resolv_conf(Path(path).read_text()) if path else DNSConfig()
    except OSError:
        return DNSConfig()


def name_files(pod: Object, pod_ip: str, host: DNSConfig, cluster_dns: list[str],
               cluster_domain: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """{path in the container: content} and the warnings: /etc/resolv.conf for every pod, /etc/hosts
    (localhost, then the pod's address with its FQDN and hostname, then ``hostAliases``) for a pod with
    an address of the agent's bridge (``pod_ip``; the engine, which gave the sandbox no network, would
    name the pod 127.0.0.1)."""
    config = pod_dns_config(pod, host, cluster_dns, cluster_domain)
    files = {"/etc/resolv.conf": config.render()}
    if pod_ip:
        hostname, domain = pod_hostname(pod, cluster_domain)
        files["/etc/hosts"] = hosts_file(hostname, pod_ip, domain, (pod.get("spec") or {}).get("hostAliases"))
    return files, config.warnings
