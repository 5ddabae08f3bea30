"""A plan target's twin: the same stack, booted here on the twin of the target's cloud. Pure.

``rehearse --twin`` runs target T's roles, counts, user-data, ports and health checks on the
provider that presents T's cloud to the guests on this machine (``docs/providers/twins.md``).
What is the cloud's own does not carry over: credentials (a twin needs none), sizes (cloud
machine types mean nothing here: each role gets the local size nearest its image's instance
type) and cloud settings, except those a twin presents (GCE's zone and project).
"""

from __future__ import annotations

from imagekit.errors import UsageError
from imagekit.plans.model import Plan, TargetCredentials, TargetSpec

# The twin of each cloud provider, and the twin settings that present it as imagekit uses it:
# the openstack provider asks Nova for a config drive and Nova also serves its metadata
# service; Rackspace has only the config drive; the azure provider registers generalized
# images, so the VM waits for Ready.
TWINS: dict[str, tuple[str, dict[str, str]]] = {
    "gcp": ("gcp-twin", {}),
    "azure": ("azure-twin", {}),  # registered as the azure provider would: see azure/vm.py
    "openstack": ("openstack-twin", {"metadata": "both"}),
    "rackspace": ("openstack-twin", {"metadata": "configdrive"}),
}
_CARRIED = {"gcp": ("zone", "project")}  # cloud settings the twin presents to the guest
SUFFIX = "-twin"


def twin_spec(name: str, spec: TargetSpec) -> TargetSpec:
    if spec.provider.endswith(SUFFIX):
        return spec
    if spec.provider not in TWINS:
        raise UsageError(
            f"target {name} runs on {spec.provider}, which has no twin",
            hint=f"twins exist for {', '.join(TWINS)} targets",
        )
    provider, settings = TWINS[spec.provider]
    carried = {k: str(v) for k, v in spec.settings.items() if k in _CARRIED.get(spec.provider, ())}
    stack = {role: r.model_copy(update={"size": None}) for role, r in spec.stack.items()}
    return TargetSpec.model_validate(
        {
            "provider": provider,
            "settings": {**carried, **settings},
            "credentials": TargetCredentials(),
            "adapt": spec.adapt,
            "stack": stack,
        }
    )


def with_twin(plan: Plan, target: str) -> tuple[Plan, str]:
    """``plan`` with target ``<target>-twin`` added (its twin), and that target's name."""
    if target not in plan.targets:
        raise UsageError(
            f"plan {plan.name} has no target {target!r}",
            hint=f"targets: {', '.join(plan.targets) or 'none'}",
        )
    spec = plan.targets[target]
    name = target if spec.provider.endswith(SUFFIX) else f"{target}{SUFFIX}"
    targets = {**plan.targets, name: twin_spec(target, spec)}
    return plan.model_copy(update={"targets": targets}), name


__all__ = ["TWINS", "twin_spec", "with_twin"]
