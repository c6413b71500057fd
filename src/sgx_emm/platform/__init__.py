"""The SGX2 platform model: CPU leaves, EPC/EPCM, page tables, the Linux driver and
the vDSO entry (spec/platform.md). `Machine` wires one of each; see machine.py for
loading an enclave and vdso.py for running code in it."""

from sgx_emm.platform.cpu import Cpu, EnclaveControl, TcsControl
from sgx_emm.platform.epcm import Epc
from sgx_emm.platform.exceptions import (
    CpuFault,
    EntryAbandoned,
    FaultReported,
    GeneralProtection,
    InvalidOpcode,
    NotInsideEnclave,
    PageFault,
    RunSnapshot,
)
from sgx_emm.platform.kernel import (
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    SGX_IOC_ENCLAVE_MODIFY_TYPES,
    SGX_IOC_ENCLAVE_REMOVE_PAGES,
    SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS,
    AddPages,
    EnclaveFd,
    FaultOutcome,
    Kernel,
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
)
from sgx_emm.platform.machine import Machine
from sgx_emm.platform.mmu import AddressSpace, Vma
from sgx_emm.platform.secinfo import SecsImage, TcsImage, secinfo_flags
from sgx_emm.platform.thread import EnclaveThread, SsaFrame
from sgx_emm.platform.vdso import Run, Vdso

__all__ = [
    "MAP_FIXED", "MAP_PRIVATE", "MAP_SHARED", "PROT_EXEC", "PROT_NONE", "PROT_READ",
    "PROT_WRITE", "SGX_IOC_ENCLAVE_MODIFY_TYPES", "SGX_IOC_ENCLAVE_REMOVE_PAGES",
    "SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS", "AddPages", "AddressSpace", "Cpu", "CpuFault",
    "EnclaveControl", "EnclaveFd", "EnclaveThread", "EntryAbandoned", "Epc",
    "FaultOutcome", "FaultReported", "GeneralProtection", "InvalidOpcode", "Kernel",
    "Machine", "ModifyTypes", "NotInsideEnclave", "PageFault", "RemovePages",
    "RestrictPermissions", "Run", "RunSnapshot", "SecsImage", "SsaFrame", "TcsControl",
    "TcsImage", "Vdso", "Vma", "secinfo_flags",
]
