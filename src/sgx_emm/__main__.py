"""`python -m sgx_emm`: the `sgx-emm` command line without the console script."""

from sgx_emm.cli import main

main(prog_name="sgx-emm")
