"""Azure's "Creating" phase on the twin: wait for the guest's Ready, or time out as Azure does.

The wireserver service keeps the last accepted health report in the node folder; this waits
for one whose state is ``Ready``. A ``NotReady`` report with ``ProvisioningFailed`` fails at
once (Azure: ``OSProvisioningFailed``); no report by the timeout is Azure's
``OSProvisioningTimedOut``. While waiting, the console is read for the cause
(``providers/console.py``): once cloud-init has settled without the cloud's data, no report
will ever come, so the wait ends after the same grace the health checks give.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from imagekit.errors import ProviderError
from imagekit.providers.console import SETTLE_GRACE, cause, diagnose
from imagekit.providers.twins.azure import parse_health

POLL = 0.5


def wait_ready(
    *,
    health_file: Path,
    console: Callable[[], str],
    gone: Callable[[], str | None],
    timeout: float,
    node: str,
) -> str:
    """ "Ready after N s" once the guest reported Ready; ``ProviderError`` otherwise."""
    started = time.monotonic()
    settled_at: float | None = None
    while True:
        elapsed = time.monotonic() - started
        if health_file.is_file():
            report = parse_health(health_file.read_bytes())
            if report["state"] == "Ready":
                return f"Ready after {elapsed:.0f} s"
            if report["substatus"] == "ProvisioningFailed":
                raise ProviderError(
                    f"azure-twin: {node} reported ProvisioningFailed "
                    f"({report['description'] or 'no description'}): Azure would end it in "
                    "OSProvisioningFailed"
                )
        findings = diagnose(console())
        fatal = next((f for f in findings if f.fatal), None)
        stopped = gone()
        if fatal is not None or stopped is not None:
            raise ProviderError(
                f"azure-twin: {node} never reported Ready: {fatal or stopped}: Azure would end "
                "it in OSProvisioningTimedOut"
            )
        if settled_at is None and any(f.settled for f in findings):
            settled_at = elapsed
        if settled_at is not None and elapsed - settled_at >= SETTLE_GRACE:
            raise ProviderError(
                f"azure-twin: {node} never reported Ready: {cause(findings)}: Azure would end "
                "it in OSProvisioningTimedOut",
                hint="the image needs cloud-init with the Azure datasource, or waagent",
            )
        if elapsed >= timeout:
            raise ProviderError(
                f"azure-twin: {node} did not report Ready within {timeout:g} s: "
                "OSProvisioningTimedOut",
                hint="the image needs cloud-init with the Azure datasource, or waagent",
            )
        time.sleep(POLL)


__all__ = ["wait_ready"]
