import os

from hypothesis import HealthCheck, settings

# Hypothesis loads its built-in "ci" profile by itself when CI is set (derandomized, no
# deadline). Locally we keep the default profile but drop the per-example deadline: these
# machines are shared and noisy, and timing is checked by `make bench`, never by tests.
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
if not os.environ.get("CI"):
    settings.load_profile("dev")
