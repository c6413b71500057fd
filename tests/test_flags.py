"""The constants keep the C integer values outside code relies on."""

import pytest

from sgx_emm import flags


def test_flags_have_c_values() -> None:
    assert flags.COMMIT_ON_DEMAND | flags.GROWSUP == 0x24
    assert flags.PAGE_TYPE_TCS == 0x100 and flags.PAGE_TYPE_SS_REST == 0x600
    assert flags.PROT_READ_WRITE_EXEC == 7
    assert flags.aligned(16) == 16 << 24
    assert flags.EXCEPTION_CONTINUE_EXECUTION == -1


def test_flag_names_cover_every_exported_constant() -> None:
    assert flags.FLAG_NAMES["COMMIT_NOW"] == 2
    assert flags.FLAG_NAMES["PROT_READ"] == 1


def test_every_name_outside_code_relies_on_exists_with_its_c_value() -> None:
    import sgx_emm

    expected = {
        "RESERVE": 0x1, "COMMIT_NOW": 0x2, "COMMIT_ON_DEMAND": 0x4, "GROWSDOWN": 0x10,
        "GROWSUP": 0x20, "FIXED": 0x40, "SYSTEM": 0x80, "PAGE_TYPE_TCS": 0x100,
        "PAGE_TYPE_REG": 0x200, "PAGE_TYPE_TRIM": 0x400, "PAGE_TYPE_SS_FIRST": 0x500,
        "PAGE_TYPE_SS_REST": 0x600, "PROT_NONE": 0, "PROT_READ": 1, "PROT_WRITE": 2,
        "PROT_EXEC": 4, "PROT_READ_WRITE": 3, "PROT_READ_EXEC": 5, "PROT_READ_WRITE_EXEC": 7,
        "EXCEPTION_CONTINUE_SEARCH": 0, "EXCEPTION_CONTINUE_EXECUTION": -1, "PAGE_SIZE": 0x1000,
    }
    for name, value in expected.items():
        assert getattr(flags, name) == value, name
    assert sgx_emm.PAGE_SIZE == 0x1000
    assert flags.COMMIT_NOW | flags.FIXED | flags.aligned(13) == 0x0D000042
    assert isinstance(flags.PROT_READ | flags.PROT_WRITE, int)


def test_pfinfo_bit_views_follow_the_pfec() -> None:
    from sgx_emm.emm.rt import PfInfo

    write = PfInfo(0x7000_0123, 0x8007)
    assert (write.p, write.rw, write.sgx) == (True, True, True)
    read = PfInfo(0x7000_0123, 0x4)
    assert (read.p, read.rw, read.sgx) == (False, False, False)


def test_pfinfo_is_an_immutable_value() -> None:
    """A record compared and hashed by its two fields, made by position or keyword,
    matched by field, pickled whole, and read-only: a handler cannot rewrite the fault
    it was given."""
    import pickle

    from sgx_emm.emm.rt import PfInfo

    a = PfInfo(0x7000_1000, 0x6)
    assert a == PfInfo(maddr=0x7000_1000, errcd=0x6)
    assert hash(a) == hash(PfInfo(0x7000_1000, 0x6))
    assert a != PfInfo(0x7000_1000, 0x4) and a != PfInfo(0x7000_2000, 0x6)
    assert a != (0x7000_1000, 0x6)  # a value of its own, not a tuple
    assert len({a, PfInfo(0x7000_1000, 0x6), PfInfo(0x7000_2000, 0x6)}) == 2
    assert pickle.loads(pickle.dumps(a)) == a
    match a:
        case PfInfo(maddr, errcd):
            assert (maddr, errcd) == (0x7000_1000, 0x6)
    for field in ("maddr", "errcd", "other"):
        with pytest.raises(AttributeError):
            setattr(a, field, 0)
    assert (a.maddr, a.errcd) == (0x7000_1000, 0x6)
