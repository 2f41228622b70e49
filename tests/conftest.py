import os

from hypothesis import HealthCheck, Phase, settings

# Hypothesis loads its built-in "ci" profile by itself when CI is set (derandomized, no
# deadline). Locally we keep the default profile but drop the per-example deadline: these
# machines are shared and noisy, and timing is checked by `make bench`, never by tests.
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
if not os.environ.get("CI"):
    settings.load_profile("dev")

# `make mutate` (scripts/mutate.py) runs every mutant with this profile: derandomized and
# without the example database, so whether a mutant is killed never depends on luck or on what
# an earlier run happened to find; no shrinking, since a failure is all a mutant run needs.
settings.register_profile(
    "mutate",
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=list(HealthCheck),
)

# The services several test packages share (broker, PostgreSQL, fleet registry): defined once,
# so each session-scoped server starts once per run.
pytest_plugins = ["tests.services"]
