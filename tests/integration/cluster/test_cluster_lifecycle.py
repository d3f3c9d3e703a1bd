"""The core lifecycle suites, run unchanged against a 3-node Redis Cluster with 4 shards.

The test bodies are imported, not copied: the fixtures of this directory swap
the single redis-server for the cluster (see ``conftest.py``). Left out:
``test_claim_empty_is_204_and_priorities_then_fifo`` — with several shards,
priority and FIFO order hold within a shard, not across shards (see
docs/performance.md, "Sharding").
"""

from tests.integration.store.test_transitions import (  # noqa: F401
    test_cancel_pending_delayed_and_in_progress,
    test_cleanup_removes_only_old_terminal_tasks,
    test_delayed_task_is_promoted_only_when_due,
    test_expired_lease_is_retried_then_dead_lettered,
    test_fifty_concurrent_claimers_each_task_claimed_once,
    test_heartbeat_keeps_lease_from_reaper,
    test_idempotency_key_returns_first_task,
    test_paused_queue_hands_out_nothing,
    test_stale_lease_cannot_report,
    test_tenants_cannot_see_each_other,
    test_two_reapers_race_without_double_retry,
)
from tests.integration.test_batch import (  # noqa: F401
    test_claim_batch_then_report_batch_with_partial_failures,
    test_create_batch_reports_each_item_in_order,
    test_long_polls_are_woken_by_a_batch_create_and_results_by_a_batch_report,
)
from tests.integration.test_http_artifacts import (  # noqa: F401
    test_batch_results_store_accepted_and_not_refused_artifacts,
    test_binary_content_is_served_by_every_codeqd_of_the_store,
    test_refused_result_stores_nothing_and_cleanup_removes_them,
)
from tests.integration.test_http_lifecycle import (  # noqa: F401
    test_create_claim_complete_and_read_result,
    test_heartbeat_nack_and_dead_letter,
    test_long_poll_claim_is_woken_by_create,
)
