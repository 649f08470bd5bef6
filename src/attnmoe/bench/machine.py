"""What machine a benchmark ran on, for the results files."""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else the platform's answer."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description(when: str = "at start") -> str:
    """CPU model, cores, torch threads and version, and the load average ``when``."""
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {} {:.2f} / {:.2f} / {:.2f}".format(when, *os.getloadavg())
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s){load}"
    )
