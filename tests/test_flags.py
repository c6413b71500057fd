"""The constants keep the C integer values outside code relies on."""

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
