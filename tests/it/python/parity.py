"""The official Python client's view of the emulator, printed as JSON for
tests/it/python_parity.rs to compare with kube-rs's view of the same world.

usage: parity.py KUBECONFIG NAMESPACE read
       parity.py KUBECONFIG NAMESPACE write PREFIX
"""
import json
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(sys.argv[1])
ns = sys.argv[2]
mode = sys.argv[3]
core = client.CoreV1Api()
policy = client.PolicyV1Api()
out = {}


def names(pods):
    return [p.metadata.name for p in pods.items]


if mode == "read":
    # Paging: `limit` and `continue` to the end.
    paged, pages, token = [], 0, None
    while True:
        page = core.list_namespaced_pod(ns, limit=2, _continue=token)
        paged += names(page)
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    out["paged"] = paged
    out["pages"] = pages
    # A watch from a resourceVersion the server compacted away: 410 Gone,
    # then a relist.
    try:
        for _ in watch.Watch().stream(
            core.list_namespaced_pod, ns, resource_version="1", timeout_seconds=5
        ):
            pass
        out["expired"] = None
    except ApiException as e:
        out["expired"] = e.status
    out["relisted"] = names(core.list_namespaced_pod(ns))
else:
    prefix = sys.argv[4]
    listed = core.list_namespaced_pod(ns)
    rv = listed.metadata.resource_version
    # Changes after the list: a label by strategic merge patch (MODIFIED),
    # another by JSON merge patch, and a new pod (ADDED).
    core.patch_namespaced_pod(
        f"{prefix}-patched", ns, {"metadata": {"labels": {"patched": "strategic"}}}
    )
    core.patch_namespaced_pod(
        f"{prefix}-patched",
        ns,
        {"metadata": {"labels": {"merged": "json"}}},
        _content_type="application/merge-patch+json",
    )
    labels = core.read_namespaced_pod(f"{prefix}-patched", ns).metadata.labels
    out["labels"] = {k: labels.get(k) for k in ("patched", "merged")}
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": f"{prefix}-new"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        },
    )
    seen = {"ADDED": [], "MODIFIED": [], "BOOKMARK": 0}
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod,
        ns,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=10,
    ):
        if event["type"] == "BOOKMARK":
            seen["BOOKMARK"] += 1
        elif event["type"] in ("ADDED", "MODIFIED"):
            name = event["object"].metadata.name
            if name not in seen[event["type"]]:
                seen[event["type"]].append(name)
        if f"{prefix}-new" in seen["ADDED"] and seen["BOOKMARK"] and seen["MODIFIED"]:
            w.stop()
    out["watch"] = {
        "added": sorted(n for n in seen["ADDED"] if n.startswith(prefix)),
        "modified": sorted(n for n in seen["MODIFIED"] if n.startswith(prefix)),
        "bookmark": seen["BOOKMARK"] > 0,
    }
    # Eviction (policy/v1): an unguarded pod goes, a guarded one is refused.
    def evict(name):
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=ns))
        try:
            core.create_namespaced_pod_eviction(name, ns, body)
            return {"status": 201}
        except ApiException as e:
            status = json.loads(e.body)
            return {"status": e.status, "reason": status.get("reason"), "message": status.get("message")}

    out["evict"] = evict(f"{prefix}-evicted")
    try:
        core.read_namespaced_pod(f"{prefix}-evicted", ns)
        out["gone"] = False
    except ApiException as e:
        out["gone"] = e.status == 404
    out["blocked"] = evict(f"{prefix}-guarded")

print(json.dumps(out))
