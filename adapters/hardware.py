"""What the numbers were measured on: CPU, RAM, OS, GPU, and package energy (RAPL).

Everything unknown is ``None``; energy comes with the reason it is unavailable.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import psutil

POWERCAP = Path("/sys/class/powercap")


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def usable_cores() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def describe(threads: int | None = None, gpu: dict | None = None) -> dict:
    """The cost record's ``hardware`` section."""
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "threads": threads,
        "ram_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "gpu": gpu,
    }


class RaplReader:
    """Cumulative package energy from Linux powercap (Intel RAPL, also AMD on recent kernels).

    Sums the top-level zones (``intel-rapl:N``, one per socket) and corrects counter
    wrap-around with ``max_energy_range_uj``. Build with :meth:`open`, which returns
    ``(None, reason)`` when the counters cannot be read.
    """

    def __init__(self, zones: list[Path]):
        self.zones = zones
        self._ranges = [int((z / "max_energy_range_uj").read_text()) for z in zones]
        self._last = [self._raw(z) for z in zones]
        self._total_uj = 0

    @staticmethod
    def _raw(zone: Path) -> int:
        return int((zone / "energy_uj").read_text())

    @classmethod
    def open(cls, root: Path = POWERCAP) -> tuple[RaplReader | None, str | None]:
        if not root.is_dir():
            return None, f"{root} does not exist (no RAPL powercap interface on this machine or container)"
        zones = sorted(p for p in root.iterdir() if p.name.count(":") == 1 and (p / "energy_uj").exists())
        if not zones:
            return None, f"{root} has no package energy zones (intel-rapl:N)"
        try:
            return cls(zones), None
        except PermissionError:
            return None, f"{zones[0] / 'energy_uj'} is not readable by this user (root only since Linux 5.10)"
        except (OSError, ValueError) as exc:
            return None, f"reading {zones[0] / 'energy_uj'} failed: {exc}"

    @property
    def source(self) -> str:
        return "rapl:" + ",".join(str(z) for z in self.zones)

    def joules(self) -> float:
        """Energy used since the reader was opened, in joules."""
        for i, z in enumerate(self.zones):
            now = self._raw(z)
            delta = now - self._last[i]
            if delta < 0:  # counter wrapped
                delta += self._ranges[i]
            self._total_uj += delta
            self._last[i] = now
        return self._total_uj / 1e6
