"""EPC paging leaves with sealing: EPA, EBLOCK, EWB and ELDU (SDM vol. 3D, 38/40).

Evicting an enclave page hands it to memory the OS controls, so EWB seals it: it
encrypts the contents, computes a MAC over the contents and the page's metadata
(the PCMD: SECINFO flags and type, linear address, owning enclave) and a fresh
version, and stores that version in a slot of a Version Array (VA) page inside
the EPC, where the OS cannot touch it. ELDU recomputes the MAC with the version
it finds in the slot the kernel names and clears the slot: an older copy (its
version is gone from every slot), changed bytes or another page's image under
this address (the address is in the MAC) all fail with SGX_MAC_COMPARE_FAIL,
and the kernel, which cannot load the page, answers the fault with SIGBUS.

Model choices: the key is a per-CPU random 256-bit value and the MAC is
HMAC-SHA256 (the SDM's is AES-GCM based); the cipher is a SHA-256 keystream
keyed by (key, version). EWB requires the page to be BLOCKED (EBLOCK) and the
blocking epoch to be tracked (ETRACK plus the threads' exits), else
SGX_PAGE_NOT_BLOCKED / SGX_NOT_TRACKED; an occupied VA slot is
SGX_VA_SLOT_OCCUPIED. A VA page holds 512 eight-byte slots (its EPC contents).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import replace

from sgx_emm.flags import PAGE_SIZE
from sgx_emm.platform.encls import EnclsLeaves
from sgx_emm.platform.epcm import F_BLOCKED, F_VALID, NO_OWNER
from sgx_emm.platform.exceptions import GeneralProtection, PageFault
from sgx_emm.platform.processor import describe_entry
from sgx_emm.platform.secinfo import PT_SECS, PT_VA
from sgx_emm.platform.state import EvictedPage
from sgx_emm.trace import LEAF

SGX_BLKSTATE = 3
SGX_MAC_COMPARE_FAIL = 9
SGX_PAGE_NOT_BLOCKED = 10
SGX_NOT_TRACKED = 11
SGX_VA_SLOT_OCCUPIED = 12
#: eight-byte version slots per VA page
VA_SLOTS = PAGE_SIZE // 8

_ENCLS_PF = 0x8001
_SLOT = struct.Struct("<Q")
_PCMD = struct.Struct("<BBQiQ")


class SealingLeaves(EnclsLeaves):
    """EPA, EBLOCK, EWB, ELDU on the processor's EPC."""

    _seal_key: bytes = b""
    _seal_version: int = 0

    def _key(self) -> bytes:
        if not self._seal_key:
            self._seal_key = os.urandom(32)
        return self._seal_key

    def _va_slot(self, va_slot: int, leaf: str) -> tuple[int, int]:
        """A VA-slot operand: an 8-byte aligned address in a VA page. (slot, offset)."""
        page = va_slot & ~(PAGE_SIZE - 1)
        slot = self._epc_operand(page, leaf)
        epc = self.epc
        if va_slot & 7 or not epc.flags[slot] & F_VALID or epc.pt[slot] != PT_VA:
            raise GeneralProtection(reason=f"{leaf}: {va_slot:#x} is not a VA slot "
                                           f"({describe_entry(epc, slot)})")
        return slot, va_slot & (PAGE_SIZE - 1)

    def _enclave_page_flags(self, epc_page: int, slot: int, leaf: str) -> int:
        """The EPCM flags of an EBLOCK/EWB target, which must be a VALID page of an
        enclave's memory (not its SECS or a VA page): both leaves check this alike."""
        epc = self.epc
        f = epc.flags[slot]
        if not f & F_VALID:
            raise PageFault(_ENCLS_PF, epc_page, f"{leaf}: EPC page {epc_page:#x} is not VALID")
        if epc.pt[slot] in (PT_SECS, PT_VA):
            raise GeneralProtection(reason=f"{leaf}: {describe_entry(epc, slot)}")
        return f

    def epa(self, epc_page: int) -> None:
        """EPA: make a free EPC page a Version Array page (512 empty slots).

        Raises: #GP (not an EPC page), #PF (the page is VALID)."""
        with self.lock:
            self.trace.emit(LEAF, "EPA")
            slot = self._epc_operand(epc_page, "EPA")
            if self.epc.flags[slot] & F_VALID:
                raise PageFault(_ENCLS_PF, epc_page, f"EPA: EPC page {epc_page:#x} is in use")
            self.epc.install(slot, F_VALID, PT_VA, NO_OWNER, 0)

    def eblock(self, epc_page: int) -> int:
        """EBLOCK: mark a page BLOCKED (no new translations) in the current epoch.

        Returns: 0, or SGX_BLKSTATE if it already was. Raises: #GP (not an EPC
        page; a SECS or VA page), #PF (not VALID)."""
        with self.lock:
            self.trace.emit(LEAF, "EBLOCK")
            slot = self._epc_operand(epc_page, "EBLOCK")
            epc = self.epc
            f = self._enclave_page_flags(epc_page, slot, "EBLOCK")
            if f & F_BLOCKED:
                return SGX_BLKSTATE
            epc.flags[slot] = f | F_BLOCKED
            enc = self.enclaves.get(epc.owner[slot])
            if enc is not None:
                epc.epoch[slot] = enc.epoch
            return 0

    def ewb(self, epc_page: int, va_slot: int) -> EvictedPage | int:
        """EWB: seal a BLOCKED, tracked page out of the EPC into `va_slot`'s version.

        Returns: the sealed page, or SGX_PAGE_NOT_BLOCKED / SGX_NOT_TRACKED /
        SGX_VA_SLOT_OCCUPIED (nothing changed). Raises: #GP (bad operands; a SECS
        or VA page), #PF (not VALID)."""
        with self.lock:
            self.trace.emit(LEAF, "EWB", addr=self._page_of(epc_page))
            slot = self._epc_operand(epc_page, "EWB")
            va, off = self._va_slot(va_slot, "EWB")
            epc = self.epc
            f = self._enclave_page_flags(epc_page, slot, "EWB")
            if not f & F_BLOCKED:
                return SGX_PAGE_NOT_BLOCKED
            enc = self.enclaves.get(epc.owner[slot])
            if enc is not None and epc.epoch[slot] > enc.tracked:
                return SGX_NOT_TRACKED
            page = epc.writable_page(va)
            if _SLOT.unpack_from(page, off)[0]:
                return SGX_VA_SLOT_OCCUPIED
            self._seal_version += 1
            version = self._seal_version
            _SLOT.pack_into(page, off, version)
            clear = bytes(epc.page_bytes(slot))
            flags = f & ~F_BLOCKED
            unsealed = EvictedPage(epc.owner[slot], flags, epc.pt[slot], epc.linaddr[slot],
                                   epc.epoch[slot], _cipher(self._key(), version, clear))
            blob = replace(unsealed, mac=_mac(self._key(), unsealed, version))
            self._free_page(enc, slot)
            return blob

    def eldu(self, blob: EvictedPage, secs_page: int, epc_page: int, va_slot: int) -> int:
        """ELDU: check a sealed page against the version in `va_slot`, load it into a
        free EPC page and clear the slot.

        Returns: 0, or SGX_MAC_COMPARE_FAIL (forged, relabelled, or an old copy:
        nothing loaded). Raises: #GP (bad operands; the page belongs to another
        enclave), #PF (the target page is VALID)."""
        with self.lock:
            self.trace.emit(LEAF, "ELDU", addr=blob.linaddr)
            slot = self._free_target(epc_page, "ELDU")
            enc = self._secs_operand(secs_page, "ELDU")
            va, off = self._va_slot(va_slot, "ELDU")
            if enc.secs_slot != blob.secs_slot:
                raise GeneralProtection(reason="ELDU: the page belongs to another enclave")
            page = self.epc.writable_page(va)
            version = _SLOT.unpack_from(page, off)[0]
            key = self._key()
            if (not version or blob.contents is None
                    or not hmac.compare_digest(blob.mac, _mac(key, blob, version))):
                return SGX_MAC_COMPARE_FAIL
            _SLOT.pack_into(page, off, 0)
            self.epc.install(slot, blob.flags, blob.pt, blob.secs_slot, blob.linaddr,
                             blob.epoch, _cipher(key, version, blob.contents))
            enc.children += 1
            return 0


def _mac(key: bytes, blob: EvictedPage, version: int) -> bytes:
    """The MAC over the PCMD (flags, type, address, owner), the contents, the version."""
    pcmd = _PCMD.pack(blob.flags & 0xFF, blob.pt, blob.linaddr, blob.secs_slot, version)
    return hmac.new(key, pcmd + (blob.contents or b""), hashlib.sha256).digest()


def _cipher(key: bytes, version: int, data: bytes) -> bytes:
    """Encrypt or decrypt 4 KiB (a keystream XOR: the same call both ways)."""
    seed = key + version.to_bytes(8, "little")
    stream = b"".join(hashlib.sha256(seed + i.to_bytes(2, "little")).digest()
                      for i in range(PAGE_SIZE // 32))
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        PAGE_SIZE, "little")
