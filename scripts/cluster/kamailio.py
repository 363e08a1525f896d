"""The cluster's SIP front: Kamailio (Debian's package) with the dispatcher module in front of the IVR gateways.

One command line for the supervisor (scripts/stack.py), the tests and an operator: deploy/kamailio/kamailio.cfg
parameterised with `-A NAME=value`, running in the foreground (-DD -E) with its runtime directory, control socket
and dispatcher list inside the work directory we give it, so it writes nothing under /run, /var or /etc.

As root it drops to the `kamailio` user the Debian package creates (-u/-g, after binding its ports); the runtime
directory is then that user's, and the list file readable by it (`dispatcher.reload` rereads it unprivileged).
That needs a work directory the user can reach (every parent searchable by others, as under /tmp or /srv; not
pytest's 0700 tmp_path): where it cannot, Kamailio stays root rather than fail to remove its control socket or
reread its list.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from scripts.stack import REPO_ROOT, ChildSpec

LOOPBACK = "127.0.0.1"
CONFIG = REPO_ROOT / "deploy" / "kamailio" / "kamailio.cfg"
SYSTEM_USER = "kamailio"
DISPATCHER_SET = 1  # DS_SET in the config: the IVR pool

# Defaults of the config file, repeated here so the command line always says what is in force.
PROBE_INTERVAL_S = 10
PROBE_THRESHOLD = 3
FR_TIMER_MS = 2000  # no reply at all from a gateway by then: the next one is tried
FR_TRYING_TIMER_MS = 2000  # after the gateway's 100 Trying: its 18x or final answer by then, else the next one
FR_INV_TIMER_MS = 30000  # after the gateway's 18x: its final answer by then (no failover: 408 to the caller)
RETRY_AFTER_S = 10


def kamailio_binary() -> str:
    found = shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)
    if found is None:
        raise FileNotFoundError("no kamailio: install the Debian package `kamailio`")
    return found


def dispatcher_list(gateways: Sequence[tuple[str, int]]) -> str:
    """The list file: one line per gateway in set 1 (flags 0 = active; probing mode 1 probes them all)."""
    if not gateways:
        raise ValueError("the SIP front needs at least one gateway")
    lines = ["# setid destination flags priority attributes (written by scripts/cluster/kamailio.py)"]
    for number, (host, port) in enumerate(gateways, start=1):
        lines.append(f"{DISPATCHER_SET} sip:{host}:{port} 0 0 duid=gw{number}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class KamailioFront:
    """Where one Kamailio keeps its files: WORKDIR/dispatcher.list, WORKDIR/run (runtime dir, kamcmd socket)."""

    workdir: Path

    @property
    def list_file(self) -> Path:
        return self.workdir / "dispatcher.list"

    @property
    def runtime_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def ctl_socket(self) -> str:
        """For `kamcmd -s ... dispatcher.list`."""
        return f"unix:{self.runtime_dir / 'kamailio_ctl'}"

    def drops_privileges(self) -> bool:
        """As root, with the `kamailio` user present and the work directory reachable by it."""
        if os.geteuid() != 0:
            return False
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return False  # no Debian package user
        workdir = self.workdir.resolve()
        return all(_searchable_by_others(folder) for folder in [workdir, *workdir.parents])

    def prepare(self, gateways: Sequence[tuple[str, int]]) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.list_file.write_text(dispatcher_list(gateways))
        self.list_file.chmod(0o644)
        if self.drops_privileges():
            shutil.chown(self.runtime_dir, SYSTEM_USER, SYSTEM_USER)
            self.runtime_dir.chmod(0o700)

    def argv(self, sip_port: int, *, host: str = LOOPBACK, probe_interval_s: int = PROBE_INTERVAL_S,
             probe_threshold: int = PROBE_THRESHOLD, fr_timer_ms: int = FR_TIMER_MS,
             fr_trying_timer_ms: int = FR_TRYING_TIMER_MS, fr_inv_timer_ms: int = FR_INV_TIMER_MS,
             retry_after_s: int = RETRY_AFTER_S, defines: Sequence[str] = ()) -> list[str]:
        argv = [kamailio_binary(), "-f", str(CONFIG), "-DD", "-E", "-Y", str(self.runtime_dir), "-w", str(self.workdir),
                "-A", f"SIP_ADDR={host}", "-A", f"SIP_PORT={sip_port}",
                "-A", f'DS_LIST="{self.list_file}"', "-A", f'CTL_SOCKET="{self.ctl_socket}"',
                "-A", f"PROBE_INTERVAL_S={int(probe_interval_s)}", "-A", f"PROBE_THRESHOLD={int(probe_threshold)}",
                "-A", f"FR_TIMER_MS={int(fr_timer_ms)}", "-A", f"FR_TRYING_TIMER_MS={int(fr_trying_timer_ms)}",
                "-A", f"FR_INV_TIMER_MS={int(fr_inv_timer_ms)}",
                "-A", f"RETRY_AFTER_S={int(retry_after_s)}"]
        for define in defines:  # e.g. WITH_PIKE, LOG_LEVEL=3
            argv += ["-A", define]
        if self.drops_privileges():
            argv += ["-u", SYSTEM_USER, "-g", SYSTEM_USER]
        return argv


def kamailio_spec(workdir: Path, sip_port: int, gateways: Sequence[tuple[str, int]], env: Mapping[str, str],
                  probe_interval_s: int = PROBE_INTERVAL_S, *, host: str = LOOPBACK,
                  probe_threshold: int = PROBE_THRESHOLD, fr_timer_ms: int = FR_TIMER_MS,
                  fr_trying_timer_ms: int = FR_TRYING_TIMER_MS, fr_inv_timer_ms: int = FR_INV_TIMER_MS,
                  retry_after_s: int = RETRY_AFTER_S, defines: Sequence[str] = ()) -> ChildSpec:
    """The SIP front on host:sip_port (UDP and TCP) over `gateways` ((host, SIP port) each); writes the dispatcher
    list into `workdir`. Ready once its TCP port accepts."""
    front = KamailioFront(workdir)
    front.prepare(gateways)
    argv = front.argv(sip_port, host=host, probe_interval_s=probe_interval_s, probe_threshold=probe_threshold,
                      fr_timer_ms=fr_timer_ms, fr_trying_timer_ms=fr_trying_timer_ms, fr_inv_timer_ms=fr_inv_timer_ms,
                      retry_after_s=retry_after_s, defines=defines)
    return ChildSpec("kamailio", tuple(argv), f"tcp://{host}:{sip_port}", env, cwd=workdir)


def _searchable_by_others(folder: Path) -> bool:
    try:
        return bool(folder.stat().st_mode & stat.S_IXOTH)
    except FileNotFoundError:
        return True  # not made yet: prepare() makes it 0755 (mkdir's default under the usual umask)
