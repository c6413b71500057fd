"""Suite-wide settings: hypothesis must not fail on a loaded machine.

CI and developers run the suite on 2 shared cores, sometimes beside other jobs, so
timing-based health checks and per-example deadlines would make tests flaky
without saying anything about correctness. Speed is measured in benchmarks/.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "sgx-emm",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("sgx-emm")
