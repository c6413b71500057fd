"""The SDK's enclave configuration: EnclaveConfig, config.xml, and the image it lays out."""

from __future__ import annotations

from pathlib import Path

import pytest
from services_support import small

from sgx_emm import Enclave
from sgx_emm.flags import PAGE_SIZE
from sgx_emm.runtime.layout import build_layout
from sgx_emm.services import ConfigError, EnclaveConfig, GrowthPolicy
from sgx_emm.services.heap import heap_bounds

SDK_XML = """<EnclaveConfiguration>
  <ProdID>0</ProdID>
  <ISVSVN>0</ISVSVN>
  <StackMaxSize>0x10000</StackMaxSize>
  <StackMinSize>0x2000</StackMinSize>
  <HeapMaxSize>0x100000</HeapMaxSize>
  <HeapInitSize>0x8000</HeapInitSize>
  <HeapMinSize>0x4000</HeapMinSize>
  <TCSNum>3</TCSNum>
  <TCSMaxNum>6</TCSMaxNum>
  <TCSMinPool>1</TCSMinPool>
  <TCSPolicy>1</TCSPolicy>
  <ReservedMemMaxSize>0x4000</ReservedMemMaxSize>
  <ReservedMemMinSize>0x1000</ReservedMemMinSize>
  <ReservedMemInitSize>0x2000</ReservedMemInitSize>
  <ReservedMemExecutable>1</ReservedMemExecutable>
  <DisableDebug>0</DisableDebug>
  <MiscSelect>1</MiscSelect>
  <MiscMask>0xFFFFFFFF</MiscMask>
</EnclaveConfiguration>
"""


def test_the_default_config_lays_out_todays_default_image() -> None:
    assert EnclaveConfig().layout() == build_layout(4)
    assert EnclaveConfig(tcs_num=2).layout() == build_layout(2)
    default = Enclave.create()
    configured = Enclave.create(config=EnclaveConfig())
    assert configured.layout == default.layout
    assert configured.tcs_addresses == default.tcs_addresses
    assert (configured.user_base, configured.user_end) == (default.user_base, default.user_end)
    assert configured.emm.regions("rts") == default.emm.regions("rts")


def test_config_xml_is_read_with_the_sdks_element_names(tmp_path: Path) -> None:
    path = tmp_path / "Enclave.config.xml"
    path.write_text(SDK_XML)
    cfg = EnclaveConfig.from_xml(path)
    assert (cfg.stack_min_size, cfg.stack_max_size) == (0x2000, 0x10000)
    assert (cfg.heap_min_size, cfg.heap_init_size, cfg.heap_max_size) == (0x4000, 0x8000,
                                                                         0x100000)
    assert (cfg.tcs_num, cfg.max_threads, cfg.tcs_min_pool, cfg.tcs_policy) == (3, 6, 1, 1)
    assert cfg.reserved_mem_executable is True
    assert dict(cfg.signing)["MiscMask"] == 0xFFFFFFFF
    assert EnclaveConfig.from_xml(SDK_XML) == cfg         # the text itself works too


def test_an_enclave_from_config_xml_has_the_sdks_image(tmp_path: Path) -> None:
    path = tmp_path / "config.xml"
    path.write_text(SDK_XML)
    enc = small(config=str(path))
    assert len(enc.tcs_addresses) == 3
    start, static_end, end = heap_bounds(enc.layout)
    assert (static_end - start, end - start) == (0x4000, 0x100000)
    stack = enc.layout.find("stack", 0)
    assert stack.size == 0x2000 and enc.layout.find("stack_dyn", 0).size == 0xE000
    assert enc.layout.find("reserved").size == 0x2000
    assert enc.layout.find("reserved_dyn").size == 0x2000
    # HeapInitSize: committed by the trusted init beyond the loaded HeapMinSize
    heap = [r for r in enc.emm.regions("rts") if r.start == enc.base + static_end]
    assert heap and sum(heap[0].committed) == (0x8000 - 0x4000) // PAGE_SIZE
    assert enc.heap.stats().committed == 0x8000


def test_numbers_in_c_notation() -> None:
    xml = ("<EnclaveConfiguration><TCSNum>010</TCSNum><StackMaxSize>{}</StackMaxSize>"
           "</EnclaveConfiguration>")
    assert EnclaveConfig.from_xml(xml.format("0x9000")).tcs_num == 8     # octal 010
    assert EnclaveConfig.from_xml(xml.format("36864")).stack_max_size == 0x9000


@pytest.mark.parametrize("body, message", [
    ("<HeapMaxSize>-1</HeapMaxSize>", "negative values are not allowed"),
    ("<HeapMaxSize>0x1001</HeapMaxSize>", "HeapMaxSize 0x1001 is not a multiple of the page"),
    ("<HeapMaxSize>lots</HeapMaxSize>", "is not a number"),
    ("<HeapMaxSize>1_000</HeapMaxSize>", "is not a number"),
    ("<HeapMaxSize></HeapMaxSize>", "has no value"),
    ("<TCSNum>2</TCSNum><TCSNum>3</TCSNum>", "<TCSNum> is given twice"),
    ("<HeapSize>0x1000</HeapSize>", "<HeapSize> is not an element"),
    ('<TCSNum a="1">2</TCSNum>', "takes no attributes"),
    ("<TCSNum>0</TCSNum>", "TCSNum 0"),
    ("<TCSNum>4</TCSNum><TCSMaxNum>2</TCSMaxNum>", "TCSMaxNum 2 is smaller than TCSNum 4"),
    ("<TCSNum>2</TCSNum><TCSMinPool>3</TCSMinPool>", "TCSMinPool 3 is larger than TCSMaxNum"),
    ("<TCSPolicy>2</TCSPolicy>", "TCSPolicy 2"),
    ("<StackMinSize>0x10000</StackMinSize><StackMaxSize>0x8000</StackMaxSize>",
     "StackMinSize 0x10000 is larger than StackMaxSize 0x8000"),
    ("<HeapMinSize>0x8000</HeapMinSize><HeapInitSize>0x4000</HeapInitSize>",
     "HeapMinSize <= HeapInitSize <= HeapMaxSize"),
    ("<MiscSelect>0</MiscSelect>", "EXINFO"),
    ("<ReservedMemExecutable>2</ReservedMemExecutable>", "expected 0 or 1"),
    ("<ReservedMemMinSize>0x1000</ReservedMemMinSize>", "ReservedMemMaxSize is 0"),
])
def test_bad_values_are_refused_naming_the_element(body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EnclaveConfig.from_xml(f"<EnclaveConfiguration>{body}</EnclaveConfiguration>")


def test_bad_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        EnclaveConfig.from_xml(tmp_path / "missing.xml")
    with pytest.raises(ConfigError, match="not well-formed XML"):
        EnclaveConfig.from_xml("<EnclaveConfiguration>")
    with pytest.raises(ConfigError, match="expected <EnclaveConfiguration>"):
        EnclaveConfig.from_xml("<Config/>")
    with pytest.raises(TypeError, match="config"):
        Enclave.create(config=42)  # type: ignore[arg-type]


def test_the_dataclass_checks_its_values_too() -> None:
    with pytest.raises(ConfigError, match="HeapMaxSize 0x800"):
        EnclaveConfig(heap_max_size=0x800)
    with pytest.raises(ConfigError, match="StackMinSize 0x0"):
        EnclaveConfig(stack_min_size=0)
    with pytest.raises(ConfigError, match="TCSNum"):
        EnclaveConfig(tcs_num=True)
    with pytest.raises(ConfigError, match="heap_commit"):
        GrowthPolicy(heap_commit="lazy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="heap_step"):
        GrowthPolicy(heap_step=0x800)
    with pytest.raises(ConfigError, match="stack_fault_pages"):
        GrowthPolicy(stack_fault_pages=0)
    assert EnclaveConfig().replace(tcs_num=3).tcs_num == 3


def test_threads_and_config_must_agree() -> None:
    with pytest.raises(ValueError, match="disagrees"):
        Enclave.create(size=1 << 30, epc_pages=2048, threads=3,
                       config=EnclaveConfig(tcs_num=2))
    enc = Enclave.create(size=1 << 30, epc_pages=2048, threads=2,
                         config=EnclaveConfig(tcs_num=2))
    assert len(enc.tcs_addresses) == 2
    with pytest.raises(ValueError, match="threads must be at least 1"):
        Enclave.create(size=1 << 30, epc_pages=2048, threads=0)


def test_user_region_size_puts_the_user_range_after_the_image() -> None:
    enc = small(config=EnclaveConfig(tcs_num=1, user_region_size=0x100000))
    assert enc.user_base == enc.base + enc.layout.image_size
    assert enc.user_end - enc.user_base == 0x100000
    with pytest.raises(ValueError, match="user range"):
        small(config=EnclaveConfig(tcs_num=1, user_region_size=1 << 30))
