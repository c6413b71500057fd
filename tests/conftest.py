"""Suite-wide settings: hypothesis must not fail on a loaded machine.

CI and developers run the suite on 2 shared cores, sometimes beside other jobs, so
timing-based health checks and per-example deadlines would make tests flaky
without saying anything about correctness. Speed is measured in benchmarks/.
Under CI (the CI variable set) the examples are derandomized, so a run of the
same commit always explores the same cases; developers' runs keep exploring new
ones.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "sgx-emm",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("sgx-emm-ci", parent=settings.get_profile("sgx-emm"),
                          derandomize=True, print_blob=True)
settings.load_profile("sgx-emm-ci" if os.environ.get("CI") else "sgx-emm")
