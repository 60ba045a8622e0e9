"""The venue acts and then answers 503 (or answers 503 without acting) on 10% of order
calls: every copy is sent until it is known, never twice."""

import pytest

from tests.copytrading.copy_world import connect_listener
from tests.faults.harness import checked, master_burst, seed_copiers, settle

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.mark.faults_budget(60)
def test_error_rate_ten_percent_loses_and_duplicates_nothing(world, rng, fault_seed, deadline):
    (master,) = seed_copiers(world, 60)
    world.start(concurrency=2)
    connect_listener()
    assert world.api().post("/v1/admin/faults", {"error_rate": 0.1, "seed": fault_seed})[0] == 200
    master_burst(world, master.login, opens=4, closes=2, rng=rng)
    settle([master.id], events=6)
    stats = world.api().get("/v1/admin/stats")[1]
    assert world.api().post("/v1/admin/faults", {"error_rate": 0.0})[0] == 200
    check = checked(world, [master])
    assert check.instructions["done"] == 6 * 60
    # The 503s after acting were answered again from the venue's idempotency record.
    assert stats["duplicates_absorbed"] > 0, stats
