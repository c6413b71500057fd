"""The enclave's configuration, as the Intel SDK's signing tool reads it from config.xml.

An SDK enclave is sized at build time: `config.xml` names the heap, the stacks,
the threads and the optional reserved-memory and user regions, and the signing
tool turns them into the layout table the loader and the trusted runtime both
read. `EnclaveConfig` holds the same values (the element names in snake case, in
bytes as in the file) and `EnclaveConfig.from_xml` reads the SDK's file with the
SDK's rules: numbers in C notation (0x hex, leading-0 octal, decimal), no minus
sign, every element at most once, no attributes, and a clear error naming the
element for anything else. Elements that matter only for signing (ProdID,
ISVSVN, DisableDebug, ...) are accepted and kept in `signing`.

Where this model differs from the SDK on EDMM hardware, and why:

- the loader EADDs HeapMinSize and the trusted init commits up to HeapInitSize
  through the manager (the SDK EADDs HeapInitSize and trims down to HeapMinSize;
  the end state is the same, without the trim);
- TCSNum threads are laid out in the image; further threads up to TCSMaxNum are
  built at run time in the user range through the public manager API
  (`sgx_emm.services.threads`), where the SDK pre-lays them out in the image;
- UserRegionSize, when set, places the user range right after the image;
  otherwise it is the upper half of ELRANGE (the default enclave's).

`GrowthPolicy` is ours: the knobs the policy study (benchmarks/services_bench.py)
turns, with defaults that do what the SDK does.
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal

from sgx_emm.flags import PAGE_SIZE
from sgx_emm.platform.secinfo import MISC_EXINFO
from sgx_emm.runtime.layout import ImageLayout, build_layout

#: TCSPolicy values: a TCS bound to the untrusted thread for its life, or taken
#: from the pool for each ecall.
TCS_POLICY_BOUND = 0
TCS_POLICY_UNBOUND = 1

#: config.xml element -> EnclaveConfig field, for the elements this model uses.
ELEMENTS: dict[str, str] = {
    "HeapInitSize": "heap_init_size",
    "HeapMinSize": "heap_min_size",
    "HeapMaxSize": "heap_max_size",
    "StackMinSize": "stack_min_size",
    "StackMaxSize": "stack_max_size",
    "TCSNum": "tcs_num",
    "TCSMaxNum": "tcs_max_num",
    "TCSMinPool": "tcs_min_pool",
    "TCSPolicy": "tcs_policy",
    "ReservedMemMinSize": "reserved_mem_min_size",
    "ReservedMemInitSize": "reserved_mem_init_size",
    "ReservedMemMaxSize": "reserved_mem_max_size",
    "ReservedMemExecutable": "reserved_mem_executable",
    "UserRegionSize": "user_region_size",
    "MiscSelect": "misc_select",
}

#: Elements the SDK's signing tool knows that change nothing in this model.
SIGNING_ELEMENTS = frozenset({
    "ProdID", "ISVSVN", "ReleaseType", "IntelSigned", "ProvisionKey", "LaunchKey",
    "DisableDebug", "HW", "MiscMask", "EnableKSS", "ISVEXTPRODID_H", "ISVEXTPRODID_L",
    "ISVFAMILYID_H", "ISVFAMILYID_L", "EnableAEXNotify", "EnclaveImageAddress",
    "ELRangeStartAddress", "ELRangeSize", "PKRU", "ExtendedFeatures", "EnableIPP",
})


class ConfigError(ValueError):
    """A configuration the SDK's signing tool would refuse; the message names the
    element and the rule."""


@dataclass(frozen=True, slots=True)
class GrowthPolicy:
    """How the services grow and shrink memory (not in the SDK's file).

    heap_commit: "explicit" commits whole steps through the manager before the
        allocator hands the memory out (sbrk); "fault" leaves pages to be committed
        by the #PF on first touch (COMMIT_ON_DEMAND, one page per fault).
    heap_step: bytes the heap commits at a time when it grows (explicit mode).
    heap_trim_threshold: free bytes at the top of the heap above which the heap
        gives pages back (uncommit), keeping `heap_step` of slack; 0 never trims.
    stack_fault_pages: pages a stack fault commits at once (1: the EMM's own
        handler; more: the GROWSDOWN batch commit the reference leaves a TODO).
    heap_fault_pages: pages a heap fault commits at once when `heap_commit` is
        "fault" (1: the EMM's own handler; more: the heap's on-demand GROWSUP
        region gets a handler that commits that many pages up from the fault).
    """

    heap_commit: Literal["explicit", "fault"] = "explicit"
    heap_step: int = 0x4000
    heap_trim_threshold: int = 0x10000
    stack_fault_pages: int = 1
    heap_fault_pages: int = 1

    def __post_init__(self) -> None:
        if self.heap_commit not in ("explicit", "fault"):
            raise ConfigError(f"heap_commit {self.heap_commit!r}: expected 'explicit' or "
                              "'fault'")
        for name in ("heap_step", "heap_trim_threshold"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0 or value % PAGE_SIZE:
                raise ConfigError(f"{name} {value!r}: expected a non-negative multiple of "
                                  f"the page size ({PAGE_SIZE:#x})")
        if self.heap_step == 0:
            raise ConfigError("heap_step 0: the heap must grow by at least one page")
        for name in ("stack_fault_pages", "heap_fault_pages"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"{name} {value!r}: expected a positive number of pages")


@dataclass(frozen=True, slots=True)
class EnclaveConfig:
    """The SDK's enclave configuration, in bytes; the defaults give the default enclave.

    `EnclaveConfig()` lays out exactly the image `Enclave.create()` builds without
    a configuration (4 threads, a 16 KiB heap growing to 256 KiB, 8 KiB stacks
    growing to 32 KiB). Values are checked when the object is made
    (`ConfigError`, a ValueError, names the field and the rule).
    """

    heap_init_size: int = 0x4000
    heap_min_size: int = 0x4000
    heap_max_size: int = 0x40000
    stack_min_size: int = 0x2000
    stack_max_size: int = 0x8000
    tcs_num: int = 4
    tcs_max_num: int | None = None          # None: TCSNum (no dynamic threads)
    tcs_min_pool: int = 0
    tcs_policy: int = TCS_POLICY_UNBOUND
    reserved_mem_min_size: int = 0
    reserved_mem_init_size: int = 0
    reserved_mem_max_size: int = 0
    reserved_mem_executable: bool = False
    user_region_size: int = 0               # 0: the upper half of ELRANGE
    misc_select: int = MISC_EXINFO
    policy: GrowthPolicy = field(default_factory=GrowthPolicy)
    #: signing-only elements read from a config.xml, unused by the model
    signing: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name in ("policy", "signing", "tcs_max_num", "reserved_mem_executable"):
                continue
            value = getattr(self, f.name)
            if not _is_int(value) or value < 0:
                raise ConfigError(f"{_element(f.name)} {value!r}: expected a non-negative "
                                  "integer")
        if self.tcs_max_num is not None and (not _is_int(self.tcs_max_num)
                                             or self.tcs_max_num < 0):
            raise ConfigError(f"TCSMaxNum {self.tcs_max_num!r}: expected a non-negative "
                              "integer")
        if not isinstance(self.reserved_mem_executable, bool | int):
            raise ConfigError(f"ReservedMemExecutable {self.reserved_mem_executable!r}: "
                              "expected 0 or 1")
        if not isinstance(self.policy, GrowthPolicy):
            raise ConfigError(f"policy {self.policy!r}: expected a GrowthPolicy")
        for name in ("heap_init_size", "heap_min_size", "heap_max_size", "stack_min_size",
                     "stack_max_size", "reserved_mem_min_size", "reserved_mem_init_size",
                     "reserved_mem_max_size", "user_region_size"):
            value = getattr(self, name)
            if value % PAGE_SIZE:
                raise ConfigError(f"{_element(name)} {value:#x} is not a multiple of the "
                                  f"page size ({PAGE_SIZE:#x})")
        if not self.heap_min_size <= self.heap_init_size <= self.heap_max_size:
            raise ConfigError(
                f"heap sizes must satisfy HeapMinSize <= HeapInitSize <= HeapMaxSize; got "
                f"{self.heap_min_size:#x}, {self.heap_init_size:#x}, {self.heap_max_size:#x}")
        if self.stack_min_size < PAGE_SIZE:
            raise ConfigError(f"StackMinSize {self.stack_min_size:#x}: a thread needs at "
                              f"least one committed stack page ({PAGE_SIZE:#x})")
        if self.stack_min_size > self.stack_max_size:
            raise ConfigError(f"StackMinSize {self.stack_min_size:#x} is larger than "
                              f"StackMaxSize {self.stack_max_size:#x}")
        if self.tcs_num < 1:
            raise ConfigError("TCSNum 0: an enclave needs at least one thread")
        if self.max_threads < self.tcs_num:
            raise ConfigError(f"TCSMaxNum {self.max_threads} is smaller than TCSNum "
                              f"{self.tcs_num}")
        if self.tcs_min_pool > self.max_threads:
            raise ConfigError(f"TCSMinPool {self.tcs_min_pool} is larger than TCSMaxNum "
                              f"{self.max_threads}")
        if self.tcs_policy not in (TCS_POLICY_BOUND, TCS_POLICY_UNBOUND):
            raise ConfigError(f"TCSPolicy {self.tcs_policy}: expected 0 (bound) or "
                              "1 (unbound)")
        if not (self.reserved_mem_min_size <= self.reserved_mem_init_size
                <= self.reserved_mem_max_size) and self.reserved_mem_max_size:
            raise ConfigError(
                "reserved memory sizes must satisfy ReservedMemMinSize <= "
                "ReservedMemInitSize <= ReservedMemMaxSize; got "
                f"{self.reserved_mem_min_size:#x}, {self.reserved_mem_init_size:#x}, "
                f"{self.reserved_mem_max_size:#x}")
        if self.reserved_mem_max_size == 0 and (self.reserved_mem_min_size
                                                or self.reserved_mem_init_size):
            raise ConfigError("ReservedMemMinSize/InitSize are set but ReservedMemMaxSize "
                              "is 0")
        if not self.misc_select & MISC_EXINFO:
            raise ConfigError(f"MiscSelect {self.misc_select:#x}: bit 0 (EXINFO) must be set; "
                              "the manager reads fault addresses from EXINFO")

    # ------------------------------------------------------------ derived
    @property
    def max_threads(self) -> int:
        """TCSMaxNum, which defaults to TCSNum."""
        return self.tcs_num if self.tcs_max_num is None else self.tcs_max_num

    def layout(self) -> ImageLayout:
        """The image layout these values give (the signing tool's layout table)."""
        return build_layout(
            self.tcs_num,
            heap_init_pages=self.heap_min_size // PAGE_SIZE,
            heap_max_pages=self.heap_max_size // PAGE_SIZE,
            stack_init_pages=self.stack_min_size // PAGE_SIZE,
            stack_max_pages=self.stack_max_size // PAGE_SIZE,
            reserved_init_pages=(self.reserved_mem_init_size or self.reserved_mem_min_size)
            // PAGE_SIZE,
            reserved_max_pages=self.reserved_mem_max_size // PAGE_SIZE,
            reserved_executable=bool(self.reserved_mem_executable))

    def replace(self, **changes: object) -> EnclaveConfig:
        """A copy with some values changed (checked again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # ------------------------------------------------------------ config.xml
    @classmethod
    def from_xml(cls, source: str | os.PathLike[str], *,
                 policy: GrowthPolicy | None = None) -> EnclaveConfig:
        """Read an SDK config.xml (a path, or the XML text itself when it starts with '<').

        Elements not given keep this class's defaults (not the SDK's, which size a
        production enclave: a 1 MiB heap and 256 KiB stacks would make every
        simulated enclave slow to build).
        """
        text = str(source)
        where = "config"
        if not text.lstrip().startswith("<"):
            where = text
            try:
                with open(text, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as e:
                raise ConfigError(f"{where}: cannot read the file: {e.strerror}") from None
        try:
            root = ET.fromstring(text)
        except ET.ParseError as e:
            raise ConfigError(f"{where}: not well-formed XML: {e}") from None
        if root.tag != "EnclaveConfiguration":
            raise ConfigError(f"{where}: the root element is <{root.tag}>, expected "
                              "<EnclaveConfiguration>")
        if root.attrib:
            raise ConfigError(f"{where}: <EnclaveConfiguration> takes no attributes")
        values: dict[str, object] = {}
        signing: list[tuple[str, int]] = []
        seen: set[str] = set()
        for child in root:
            name = str(child.tag)
            if name in seen:
                raise ConfigError(f"{where}: <{name}> is given twice")
            seen.add(name)
            if child.attrib:
                raise ConfigError(f"{where}: <{name}> takes no attributes")
            if len(child):
                raise ConfigError(f"{where}: <{name}> must hold a number, not elements")
            value = _parse_number(name, child.text, where)
            if name in ELEMENTS:
                key = ELEMENTS[name]
                values[key] = bool(value) if key == "reserved_mem_executable" else value
                if key == "reserved_mem_executable" and value > 1:
                    raise ConfigError(f"{where}: <{name}> {value}: expected 0 or 1")
            elif name in SIGNING_ELEMENTS:
                signing.append((name, value))
            else:
                raise ConfigError(f"{where}: <{name}> is not an element of the SDK's "
                                  "enclave configuration")
        for element, key in ELEMENTS.items():
            given = values.get(key)
            if key.endswith("_size") and isinstance(given, int) and given % PAGE_SIZE:
                raise ConfigError(f"{where}: {element} {given:#x} is not a multiple of the "
                                  f"page size ({PAGE_SIZE:#x})")
        if "heap_init_size" not in values and "heap_min_size" in values:
            # the signing tool: without HeapInitSize the heap starts at its maximum;
            # here it starts at HeapMinSize, as EDMM does after its trim
            values["heap_init_size"] = values["heap_min_size"]
        for small, big in (("heap_min_size", "heap_init_size"),
                           ("heap_init_size", "heap_max_size"),
                           ("stack_min_size", "stack_max_size")):
            # one end given alone: move the other default so the pair stays ordered
            if small in values and big not in values:
                values[big] = max(int(values[small]),  # type: ignore[call-overload]
                                  getattr(cls(), big))
            elif big in values and small not in values:
                values[small] = min(int(values[big]),  # type: ignore[call-overload]
                                    getattr(cls(), small))
        if "heap_min_size" not in values and "heap_init_size" in values:
            values["heap_min_size"] = min(int(values["heap_init_size"]),  # type: ignore[call-overload]
                                          cls().heap_min_size)
        try:
            return cls(**values, policy=policy or GrowthPolicy(),  # type: ignore[arg-type]
                       signing=tuple(signing))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


def load_config(config: EnclaveConfig | str | os.PathLike[str]) -> EnclaveConfig:
    """An EnclaveConfig as given, or read from a config.xml path (or XML text)."""
    if isinstance(config, EnclaveConfig):
        return config
    if isinstance(config, str | os.PathLike):
        return EnclaveConfig.from_xml(config)
    raise TypeError(f"config: expected an EnclaveConfig or a path to a config.xml, got "
                    f"{type(config).__name__}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _element(field_name: str) -> str:
    """The config.xml element of a field, for messages."""
    for element, name in ELEMENTS.items():
        if name == field_name:
            return element
    return field_name


def _parse_number(name: str, text: str | None, where: str) -> int:
    """A value as the signing tool reads one: C notation, unsigned 64-bit, no '-'."""
    raw = (text or "").strip()
    if not raw:
        raise ConfigError(f"{where}: <{name}> has no value")
    if "-" in raw:
        raise ConfigError(f"{where}: <{name}> {raw!r}: negative values are not allowed")
    if not raw.replace("x", "").replace("X", "").isalnum():
        raise ConfigError(f"{where}: <{name}> {raw!r} is not a number (decimal, 0x hex "
                          "or 0 octal)")
    try:
        if raw[:2].lower() == "0x":
            value = int(raw[2:], 16)
        elif len(raw) > 1 and raw[0] == "0":
            value = int(raw[1:], 8)
        else:
            value = int(raw, 10)
    except ValueError:
        raise ConfigError(f"{where}: <{name}> {raw!r} is not a number (decimal, 0x hex "
                          "or 0 octal)") from None
    if value >= 1 << 64:
        raise ConfigError(f"{where}: <{name}> {raw!r} does not fit in 64 bits")
    return value
