"""The SGX2 platform model: CPU leaves, EPC/EPCM, page tables, the Linux driver and
the vDSO entry. `Machine` wires one of each; see machine.py for loading an enclave
and vdso.py for running code in it.

Modules by concern, lowest first (none imports one above it):

- state.py, uapi.py, secinfo.py - shared records, the driver ABI, SGX constants
- epcm.py, mmu.py - the EPC with its EPCM; VMAs and page tables
- exceptions.py - the faults the CPU raises (with their reasons) and entry ends
- processor.py, encls.py, enclu.py, access.py, cpu.py - the CPU: operand checks,
  ENCLS leaves, ENCLU leaves with entry/exit/AEX, memory accesses
- hooks.py - the hook points a hostile OS may use
- encl.py, ioctl.py, reclaim.py, kernel.py - the driver: records/faults/EAUG/ELDU,
  the ioctls, EPC allocation and EWB, syscalls and the #PF handler
- thread.py, vdso.py, machine.py - enclave threads and the fault walk, the vDSO
  entry, the wiring
"""

from sgx_emm.platform.cpu import Cpu, EnclaveControl, EntryState, TcsControl
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
from sgx_emm.platform.hooks import KernelHooks
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
    FaultResult,
    Kernel,
    ModifyTypes,
    RemovePages,
    RestrictPermissions,
)
from sgx_emm.platform.machine import Machine
from sgx_emm.platform.mmu import AddressSpace, Vma
from sgx_emm.platform.secinfo import SecsImage, TcsImage, secinfo_flags
from sgx_emm.platform.thread import EnclaveThread, SsaFrame
from sgx_emm.platform.uapi import Run
from sgx_emm.platform.vdso import Vdso

__all__ = [
    "MAP_FIXED", "MAP_PRIVATE", "MAP_SHARED", "PROT_EXEC", "PROT_NONE", "PROT_READ",
    "PROT_WRITE", "SGX_IOC_ENCLAVE_MODIFY_TYPES", "SGX_IOC_ENCLAVE_REMOVE_PAGES",
    "SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS", "AddPages", "AddressSpace", "Cpu", "CpuFault",
    "EnclaveControl", "EnclaveFd", "EnclaveThread", "EntryAbandoned", "EntryState",
    "Epc", "FaultOutcome", "FaultReported", "FaultResult", "GeneralProtection",
    "InvalidOpcode", "Kernel", "KernelHooks",
    "Machine", "ModifyTypes", "NotInsideEnclave", "PageFault", "RemovePages",
    "RestrictPermissions", "Run", "RunSnapshot", "SecsImage", "SsaFrame", "TcsControl",
    "TcsImage", "Vdso", "Vma", "secinfo_flags",
]
