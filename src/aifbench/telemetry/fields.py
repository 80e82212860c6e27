"""The telemetry vocabulary: time-series fields, clock-event reasons, power states, validity flags.

Everything a sampler writes is named here once, with its unit and scope, so the telemetry
table, the window metrics and `aifbench telemetry` agree. Reason bits are NVML's
`nvmlClocksEventReason*` values (nvml.h; pynvml exposes the same constants, and a test
checks that they still match). The rules that turn readings into a power state and into
invalidating flags are in aifbench.telemetry.validity.
"""

from __future__ import annotations


# --- time-series fields: name -> (unit, scope) ---------------------------------------------
FIELDS: dict[str, tuple[str, str]] = {
    "power_w": ("W", "gpu"),                      # NVML_FI_DEV_POWER_INSTANT, scopeId GPU
    "power_avg_1s_w": ("W", "gpu"),               # nvmlDeviceGetPowerUsage: 1 s average (fallback)
    "module_power_w": ("W", "module"),            # NVML_FI_DEV_POWER_INSTANT, scopeId MODULE (GH200)
    "energy_counter_j": ("J", "gpu"),             # nvmlDeviceGetTotalEnergyConsumption, since driver load
    "sm_clock_mhz": ("MHz", "gpu"),
    "mem_clock_mhz": ("MHz", "gpu"),
    "temperature_c": ("C", "gpu"),
    "gpu_util_pct": ("%", "gpu"),
    "mem_util_pct": ("%", "gpu"),
    "memory_used_bytes": ("B", "gpu"),
    "clocks_event_reasons": ("bitmask", "gpu"),   # nvmlDeviceGetCurrentClocksEventReasons
    "power_limit_w": ("W", "gpu"),                # nvmlDeviceGetEnforcedPowerLimit: the limit in force
    "power_limit_default_w": ("W", "gpu"),        # nvmlDeviceGetPowerManagementDefaultLimit
    "ecc_corrected_volatile": ("count", "gpu"),   # NVML_FI_DEV_ECC_SBE_VOL_TOTAL
    "ecc_uncorrected_volatile": ("count", "gpu"), # NVML_FI_DEV_ECC_DBE_VOL_TOTAL
    "retired_pages_sbe": ("count", "gpu"),        # NVML_FI_DEV_RETIRED_SBE (pre-Ampere)
    "retired_pages_dbe": ("count", "gpu"),        # NVML_FI_DEV_RETIRED_DBE (pre-Ampere)
    "remapped_rows_correctable": ("count", "gpu"),    # NVML_FI_DEV_REMAPPED_COR (Ampere+)
    "remapped_rows_uncorrectable": ("count", "gpu"),  # NVML_FI_DEV_REMAPPED_UNC
    "remapped_rows_pending": ("count", "gpu"),        # NVML_FI_DEV_REMAPPED_PENDING (1 = yes)
    "pcie_tx_gbps": ("GB/s", "gpu"),              # delta of NVML_FI_DEV_PCIE_COUNT_TX_BYTES / dt
    "pcie_rx_gbps": ("GB/s", "gpu"),
    "nvlink_tx_gbps": ("GB/s", "gpu"),            # delta of NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX (KiB, all links) / dt
    "nvlink_rx_gbps": ("GB/s", "gpu"),
    "processes": ("count", "gpu"),                # compute processes on the GPU
    "other_processes": ("count", "gpu"),          # ... that are not this process
    # CPU sampler
    "process_cpu_pct": ("%", "process"),          # psutil: % of one core, > 100 with several threads
    "system_cpu_pct": ("%", "system"),            # psutil: % of all cores
    "process_rss_bytes": ("B", "process"),
    "system_memory_used_bytes": ("B", "system"),
    "cpu_power_w": ("W", "cpu-package"),          # RAPL energy delta / dt, all packages summed
    "cpu_energy_counter_j": ("J", "cpu-package"), # RAPL energy since the window started
}

# --- clock-event ("throttle") reasons, nvml.h nvmlClocksEventReason* ------------------------
REASON_BITS: dict[str, int] = {
    "GpuIdle": 0x1,
    "ApplicationsClocksSetting": 0x2,
    "SwPowerCap": 0x4,
    "HwSlowdown": 0x8,
    "SyncBoost": 0x10,
    "SwThermalSlowdown": 0x20,
    "HwThermalSlowdown": 0x40,
    "HwPowerBrakeSlowdown": 0x80,
    "DisplayClockSetting": 0x100,
}

SW_POWER_CAP = 0x4
"""SwPowerCap: clocks lowered to hold the enforced power limit. At the default limit this is the
normal sustained state of an SXM part under dense compute (a power STATE, never a flag)."""

# --- power states of a window (not faults; stored in the detail of power_capped_pct and power_limit_w)
STATES: dict[str, str] = {
    "capped_at_default": "clocks held by the power limit (SwPowerCap) while the enforced limit equals the "
                         "default limit: the normal sustained state of a GPU under dense compute",
    "capped_above_default": "SwPowerCap at an enforced limit raised above the default limit",
    "capped_below_default": "SwPowerCap at an enforced limit set below the default limit (also the "
                            "invalidating flag power_limit_below_default)",
    "uncapped": "no sample of the window had SwPowerCap set",
    "unknown": "the state cannot be told (no clock-event reasons, or the enforced or default limit is "
               "not readable: older drivers, AMD, a trace recorded without them); the reason follows",
}

# --- invalidating validity flags: name -> (reason bits that raise it, meaning) ---------------
REASON_FLAGS: dict[str, tuple[int, str]] = {
    "thermal_throttle": (0x20 | 0x40, "clocks lowered for temperature (SwThermalSlowdown, HwThermalSlowdown)"),
    "hw_slowdown": (0x8, "hardware slowdown (HwSlowdown: thermal, power brake or external signal)"),
    "power_brake": (0x80, "clocks lowered by the external power brake (HwPowerBrakeSlowdown)"),
    "sw_slowdown": (0x2 | 0x100, "clocks held below maximum by a software setting (ApplicationsClocksSetting, DisplayClockSetting)"),
}
FLAGS: dict[str, str] = {name: meaning for name, (_, meaning) in REASON_FLAGS.items()}
FLAGS.update({
    "power_limit_below_default": "the enforced power limit was set below the GPU's default limit during the window",
    "low_sm_clock": "mean SM clock of busy samples below the configured fraction (default 0.6) of the maximum SM clock",
    "other_processes": "another process had a compute context on the GPU during the window",
    "ecc_errors": "volatile ECC counts, retired pages or remapped rows increased during the window",
    "telemetry_suspended": "sampling was suspended during part of the window (telemetry_overhead benchmark)",
    "telemetry_error": "a sampling call failed unexpectedly; the window's telemetry may be incomplete",
})
NOTE_FLAGS: dict[str, str] = {
    "telemetry_insufficient": "the timed region was too short for its telemetry to be judged (aifbench.telemetry."
                              "regions): no power, energy or clock figures; the measured figures stand",
    "power_capped_legacy": "a run recorded before the validity model: its old power_throttle flag read as "
                           "power-capped at the default limit (SwPowerCap alone, at a recorded limit >= the "
                           "datasheet TDP; aifbench.analysis.legacy)",
}
"""in the flags column but not invalidating: validate does not exclude a row for these"""


def invalidating(flags: str | None) -> list[str]:
    """The invalidating flags of a `flags` cell ('a,b'): every flag but the NOTE_FLAGS."""
    return [f for f in str(flags or "").split(",") if f and f not in NOTE_FLAGS]


THROTTLE_MASK = 0x2 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100
"""reasons counted by throttle_pct: every invalidating reason (not SwPowerCap, GpuIdle or SyncBoost)"""


def decode_reasons(mask: int) -> list[str]:
    """Names of the set clock-event reason bits, e.g. 0x44 -> ['SwPowerCap', 'HwThermalSlowdown']."""
    return [name for name, bit in REASON_BITS.items() if mask & bit]


def reason_flags(mask: int) -> list[str]:
    """Validity flags raised by a clock-event reason mask."""
    return [flag for flag, (bits, _) in REASON_FLAGS.items() if mask & bits]
