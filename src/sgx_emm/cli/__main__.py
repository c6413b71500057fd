"""`python -m sgx_emm.cli`: the same commands as the `sgx-emm` script."""

from sgx_emm.cli import main

main(prog_name="sgx-emm")
