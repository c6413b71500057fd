"""The platform's shared state, header-style: plain records, no behaviour.

What more than one layer reads or writes lives here, below everything that acts
on it, the way Linux keeps `struct sgx_encl` and the architectural structures in
headers: the CPU's per-enclave control (what the SECS holds, plus tracking), its
per-TCS control (CSSA, BUSY, whose context each SSA frame holds), the state of one
entry (inside or not, SSA level and frame), and what EWB writes out for ELDU.

This module imports nothing of the package, so any layer may import it without
making a cycle. The CPU updates `EntryState`; the enclave thread only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: bytes per page (the same value as `sgx_emm.flags.PAGE_SIZE`; repeated so that
#: this module imports nothing of the package)
PAGE_BYTES = 0x1000


@dataclass(frozen=True, slots=True)
class EvictedPage:
    """What EWB writes out (the sealed page and its PCMD); ELDU takes it back.

    `contents` is encrypted and `mac` covers it with the PCMD fields and the
    version EWB put in a VA slot (sealing.py)."""

    secs_slot: int
    flags: int
    pt: int
    linaddr: int
    epoch: int
    contents: bytes | None
    mac: bytes = b""


@dataclass(slots=True)
class EnclaveControl:
    """The CPU's state for one enclave (what its SECS holds, plus tracking)."""

    secs_slot: int
    base: int
    size: int
    ssa_frame_size: int
    miscselect: int
    attributes: int
    initialized: bool = False
    children: int = 0
    epoch: int = 1                   # stamped on pages by EMODPR / EMODT
    tracked: int = 0                 # every epoch <= tracked has completed tracking
    track_epoch: int = 0             # epoch closed by the ETRACK in progress
    track_waiting: set[int] = field(default_factory=set)
    inside: set[int] = field(default_factory=set)   # TCS slots in enclave mode

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, addr: int, length: int = 1) -> bool:
        return self.base <= addr and addr + length <= self.base + self.size


@dataclass(slots=True)
class EntryState:
    """One entry (EENTER) on one TCS at one SSA level, as the CPU keeps it.

    `inside` is False once the entry left by EEXIT or AEX; `ssa_slot` is the EPC
    slot of the last page of the entry's SSA frame, where AEX writes GPRSGX.
    `owner` is whatever runs the entry's code (the `EnclaveThread`); the CPU hands
    it back on ERESUME so the vDSO knows whose access to re-execute.
    """

    enclave: EnclaveControl
    tcs: TcsControl
    level: int
    ssa_slot: int
    inside: bool = True
    owner: Any = None


@dataclass(slots=True)
class TcsControl:
    """Per-TCS processor state: CSSA, busy, and which entry each SSA frame holds."""

    slot: int
    linaddr: int
    secs_slot: int
    ossa: int
    nssa: int
    cssa: int
    busy: bool = False
    frames: dict[int, EntryState] = field(default_factory=dict)
    ssa_base: int = 0        # linear address of SSA frame 0
    frame_bytes: int = PAGE_BYTES
    #: the first SSA levels' frames as ERESUME's quick check needs them: (address,
    #: page-table chunk key, index in the chunk) of a one-page frame inside the
    #: enclave, None for any other frame. Derived once (entry.py), because OSSA,
    #: the frame size and ELRANGE never change
    frame_spots: tuple[tuple[int, int, int] | None, ...] = ()
    #: (page-table chunk key, index in the chunk) of the TCS page itself
    tcs_spot: tuple[int, int] = (0, 0)
