"""The private parts of aiokafka and faust-streaming that Pulse's overrides rely on: an upgrade
fails here, loudly, naming what to re-check, instead of in production.

- s3_archiver/record_blocks.py reads aiokafka's fetcher (`FetchResult`, `PartitionRecords`,
  the fetch table, `MemoryRecords`) and replaces its per-record decoding;
- cdc_processor/runtime.py replaces Faust's monitor hooks, mirrors `Stream.take_events` and
  `Consumer._drain_messages`, hooks `Recovery`'s end (tests/unit/cdc_processor/
  test_cdc_runtime.py checks that order) and sets aiokafka's fetch settings;
- cdc_processor/agents.py and writeback.py use a Faust stream's current event and a table's
  store (the memory store's key → partition map too), changelog topic and serializers.

The version tests read the bounds from the pyproject.toml files that pin them, so the pins and
this test cannot drift apart; each pin must have an upper bound.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import tomllib
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = {
    "aiokafka": "services/s3_archiver/src/s3_archiver/record_blocks.py and "
    "services/cdc_processor/src/cdc_processor/runtime.py (FetchTunedConsumerThread)",
    "faust-streaming": "services/cdc_processor/src/cdc_processor/runtime.py (QuietMonitor, "
    "take_batches vs Stream.take_events, ChunkedConsumer._drain_messages vs "
    "Consumer._drain_messages, RewindingFlowControl, BatchedRecovery vs "
    "Recovery._slurp_changelogs, PulseTableManager.recovery) and agents.py/writeback.py (the "
    "memory store's _key_partition)",
}
PYPROJECTS = sorted(
    str(path.relative_to(REPO))
    for path in [
        REPO / "pyproject.toml",
        REPO / "cli" / "pyproject.toml",
        *REPO.glob("*/*/pyproject.toml"),
    ]
    if path.is_file()
)


def _declared(pyproject: str) -> list[Requirement]:
    data = tomllib.loads((REPO / pyproject).read_text())
    declared = list(data.get("project", {}).get("dependencies", []))
    for group in data.get("dependency-groups", {}).values():
        declared += [d for d in group if isinstance(d, str)]
    return [Requirement(text) for text in declared]


# Every workspace package that declares them must bound them: found, not listed, so a new
# service that declares aiokafka is held to it too.
PINS = [
    (requirement.name, pyproject, requirement)
    for pyproject in PYPROJECTS
    for requirement in _declared(pyproject)
    if requirement.name in OVERRIDES
]


def test_the_overridden_libraries_are_declared_where_they_are_overridden() -> None:
    found = {(name, pyproject) for name, pyproject, _ in PINS}
    assert ("aiokafka", "services/s3_archiver/pyproject.toml") in found
    assert ("aiokafka", "services/cdc_processor/pyproject.toml") in found
    assert ("faust-streaming", "services/cdc_processor/pyproject.toml") in found


@pytest.mark.parametrize(
    ("package", "pyproject", "requirement"), PINS, ids=[f"{n}@{f}" for n, f, _ in PINS]
)
def test_installed_version_is_within_the_tested_range(
    package: str, pyproject: str, requirement: Requirement
) -> None:
    assert any(s.operator == "<" for s in requirement.specifier), (
        f"{pyproject}: {requirement} has no upper bound, but {OVERRIDES[package]} override "
        f"{package}'s private internals: bound it to the versions they were tested against"
    )
    installed = Version(version(package))
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{package} {installed} is outside {requirement.specifier} ({pyproject}), the range "
        f"{OVERRIDES[package]} were tested against. Re-read the upstream code those overrides "
        f"mirror, run tests/unit/test_private_internals.py, test_cdc_runtime.py, "
        f"test_archiver_record_blocks.py and tests/integration/s3_archiver, then move the "
        f"bound in every pyproject.toml that declares {package}"
    )


def _missing(obj: Any, names: list[str]) -> list[str]:
    return [name for name in names if not hasattr(obj, name)]


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


# --- aiokafka, as record_blocks.py and runtime.py use it ---------------------------------------

RECHECK_BLOCKS = (
    "re-check services/s3_archiver/src/s3_archiver/record_blocks.py against aiokafka's "
    "consumer/fetcher.py (FetchResult.getall, PartitionRecords._unpack_records)"
)


def test_aiokafka_fetcher_has_what_record_blocks_reads() -> None:
    from aiokafka import TopicPartition
    from aiokafka.consumer import fetcher
    from aiokafka.record.memory_records import MemoryRecords
    from s3_archiver import record_blocks

    assert not _missing(fetcher, ["READ_COMMITTED", "MemoryRecords", "FetchResult"]), RECHECK_BLOCKS
    assert fetcher.MemoryRecords is MemoryRecords, f"{RECHECK_BLOCKS} (_keep_response_bytes)"
    # _keep_response_bytes subclasses it, passing the response's bytes positionally, and walks
    # it with has_next/next_batch (a compiled class: no signature to read, so it is built).
    with_bytes = type("MemoryRecords", (record_blocks._MemoryRecordsWithBytes, MemoryRecords), {})
    records = with_bytes(b"")
    assert records.data == b"" and records.has_next() is False, RECHECK_BLOCKS
    assert hasattr(records, "next_batch"), RECHECK_BLOCKS
    assert not _missing(
        fetcher.FetchResult, ["check_assignment", "has_more", "_update_position", "getall"]
    ), RECHECK_BLOCKS
    assert _params(fetcher.FetchResult.__init__) == [
        "self",
        "tp",
        "assignment",
        "partition_records",
        "backoff",
    ], RECHECK_BLOCKS
    assert _params(fetcher.PartitionRecords.__init__) == [
        "self",
        "tp",
        "records",
        "aborted_transactions",
        "fetch_offset",
        "key_deserializer",
        "value_deserializer",
        "check_crcs",
        "isolation_level",
    ], RECHECK_BLOCKS
    tp = TopicPartition("t", 0)
    source = fetcher.PartitionRecords(
        tp, MemoryRecords(b""), [], 0, None, None, True, fetcher.READ_COMMITTED
    )
    assert not _missing(
        source,
        [
            "_records",
            "_records_iterator",
            "_isolation_level",
            "_check_crcs",
            "_aborted_producers",
            "next_fetch_offset",
            "_consume_aborted_up_to",
            "_contains_abort_marker",
        ],
    ), RECHECK_BLOCKS
    result = fetcher.FetchResult(tp, assignment=None, partition_records=source, backoff=0)
    assert not _missing(result, ["_topic_partition", "_partition_records"]), RECHECK_BLOCKS
    assert result._partition_records is source, RECHECK_BLOCKS


async def test_aiokafka_fetcher_keeps_its_results_where_record_blocks_installs() -> None:
    from aiokafka.client import AIOKafkaClient
    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.consumer.subscription_state import SubscriptionState

    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9")  # never connects
    fetcher = Fetcher(client, SubscriptionState())
    try:
        # The fetch table `install` swaps (it checks its exact type) and the deserializers it
        # requires to be unset; their absence makes `install` fall back, silently slower.
        assert type(fetcher._records) is collections.OrderedDict, RECHECK_BLOCKS
        assert (fetcher._key_deserializer, fetcher._value_deserializer) == (None, None), (
            RECHECK_BLOCKS
        )
    finally:
        await fetcher.close()
        await client.close()


async def test_aiokafka_consumer_has_the_fields_the_overrides_set() -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")  # never started
    assert not _missing(consumer, ["_fetcher", "_fetch_min_bytes", "_fetch_max_wait_ms"]), (
        "re-check record_blocks.install (consumer._fetcher) and cdc_processor's "
        "FetchTunedConsumerThread (consumer._fetch_min_bytes, _fetch_max_wait_ms)"
    )


# --- faust-streaming, as runtime.py, agents.py and writeback.py use it ------------------------

RECHECK_RUNTIME = (
    "re-check services/cdc_processor/src/cdc_processor/runtime.py against faust-streaming's "
    "own code (the method named here)"
)


def test_quiet_monitor_overrides_hooks_faust_still_calls_with_the_same_arguments() -> None:
    from cdc_processor.runtime import QuietMonitor
    from faust.sensors.monitor import Monitor

    hooks = [n for n in vars(QuietMonitor) if n.startswith("on_")]
    assert len(hooks) == 9
    for name in hooks:
        assert hasattr(Monitor, name), f"Monitor.{name} is gone: {RECHECK_RUNTIME}"
        assert _params(getattr(Monitor, name)) == _params(getattr(QuietMonitor, name)), (
            f"Monitor.{name} changed its arguments: {RECHECK_RUNTIME}"
        )


async def test_faust_stream_consumer_and_flow_control_have_what_runtime_uses() -> None:
    from cdc_processor.app import create_app
    from cdc_processor.settings import CdcSettings
    from faust.transport.consumer import Consumer
    from faust.transport.drivers import aiokafka as faust_aiokafka
    from mode.utils.queues import FlowControlEvent, FlowControlQueue
    from servicekit.settings import KafkaSettings

    settings = CdcSettings(app_id=f"guard-{uuid.uuid4().hex[:8]}", http_port=0)
    p = create_app(settings, KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1"))
    app = p.app
    app.loop = asyncio.get_running_loop()

    # take_batches (Stream.take_events' mirror) and process_batch (agents.py).
    stream = app.stream(app.channel())
    missing = _missing(
        stream,
        [
            "_enable_passive",
            "_processors",
            "_set_current_event",
            "add_processor",
            "enable_acks",
            "current_event",
            "wait",
            "ack",
            "wait_for_stopped",
            "crash",
            "should_stop",
            "channel",
            "take_events",
        ],
    )
    assert not missing, f"Stream lacks {missing}: {RECHECK_RUNTIME} (Stream.take_events)"

    # ChunkedConsumer._drain_messages (Consumer._drain_messages' mirror) and _deliver.
    assert _params(Consumer._drain_messages) == ["self", "fetcher"], RECHECK_RUNTIME
    consumer = app.consumer
    missing = _missing(
        consumer,
        [
            "getmany",
            "wait_first",
            "suspend_flow",
            "_add_gap",
            "_read_offset",
            "_commit_every",
            "_n_acked",
            "commit",
            "callback",
            "diag",
            "_stopped",
            "consumer_stopped_errors",
            "perform_seek",
            "resume_flow",
            "_new_consumer_thread",
            "_is_changelog_tp",
        ],
    )
    assert not missing, f"Consumer lacks {missing}: {RECHECK_RUNTIME} (Consumer._drain_messages)"
    thread_class = faust_aiokafka.AIOKafkaConsumerThread
    missing = _missing(thread_class, ["_create_worker_consumer", "call_thread", "_ensure_consumer"])
    assert not missing, f"AIOKafkaConsumerThread lacks {missing}: {RECHECK_RUNTIME}"
    assert hasattr(faust_aiokafka, "ensure_aiokafka_TP"), RECHECK_RUNTIME
    assert hasattr(faust_aiokafka.Transport, "Consumer"), RECHECK_RUNTIME

    # RewindingFlowControl reads each queue's deque (asyncio.Queue's `_queue`).
    flow = FlowControlEvent()
    queue = FlowControlQueue(maxsize=1, flow_control=flow, clear_on_resume=True)
    assert queue in flow._queues, f"FlowControlEvent._queues: {RECHECK_RUNTIME}"
    assert hasattr(queue, "_queue"), f"asyncio.Queue._queue: {RECHECK_RUNTIME}"

    # WriteBack.changelog_records writes a table's store and serializes as the table would.
    for writeback in p.tables:
        missing = _missing(
            writeback.table,
            [
                "data",
                "changelog_topic",
                "key_type",
                "key_serializer",
                "value_type",
                "value_serializer",
                "use_partitioner",
            ],
        )
        assert not missing, f"Table lacks {missing}: re-check cdc_processor/writeback.py"
    assert not _missing(app.serializers, ["dumps_key", "dumps_value"]), (
        "re-check cdc_processor/writeback.py (app.serializers)"
    )


def test_faust_recovery_has_what_batched_recovery_mirrors() -> None:
    """BatchedRecovery replaces Recovery._slurp_changelogs (a mode task, by name) and applies
    each record with Recovery's own state; a Faust that changed the loop or renamed that
    state fails here."""
    import inspect
    import uuid

    import faust
    from faust.tables.manager import TableManager
    from faust.tables.recovery import Recovery
    from mode.services import ServiceTask

    assert isinstance(vars(Recovery)["_slurp_changelogs"], ServiceTask), RECHECK_RUNTIME
    assert isinstance(inspect.getattr_static(TableManager, "recovery"), property), RECHECK_RUNTIME
    app = faust.App(f"pin-{uuid.uuid4().hex[:6]}", broker="kafka://127.0.0.1:1")
    manager = app.tables
    assert manager._recovery is None and hasattr(manager, "changelog_queue"), RECHECK_RUNTIME
    recovery = manager.recovery
    missing = _missing(
        recovery,
        [
            "active_tps", "standby_tps", "tp_to_table", "buffers", "buffer_sizes",
            "active_offsets", "standby_offsets", "active_highwaters", "in_recovery",
            "_active_events_received_at", "_standby_events_received_at", "_processing_times",
            "num_samples_required_for_estimate",
            "_actives_span", "_standbys_span", "signal_recovery_end", "need_recovery",
            "flush_buffers", "_set_recovery_ended", "standby_remaining_total",
        ],
    )  # fmt: skip
    assert not missing, f"Recovery lacks {missing}: {RECHECK_RUNTIME}"
    loop = inspect.getsource(vars(Recovery)["_slurp_changelogs"].fun)
    for line in (
        "await asyncio.wait_for(\n                        changelog_queue.get(), timeout=5.0",
        "if seen_offset is None or offset > seen_offset:",
        "await table.on_changelog_event(event)",
        "if len(buf) >= bufsize:",
        "table.apply_changelog_batch(buf)",
        "if self.in_recovery and not self.need_recovery():",
        "self.tables.on_standbys_ready()",
    ):
        assert line in loop, f"Recovery._slurp_changelogs changed ({line!r}): {RECHECK_RUNTIME}"


async def test_faust_memory_store_drops_the_keys_of_partitions_no_longer_held() -> None:
    # writeback.py records each key it writes in the memory store's `_key_partition` (its
    # changelog partition), as the store's recovery does, so that when a rebalance takes a
    # partition away the store forgets its keys, and a later delete goes to the key's own
    # changelog partition. An upgrade that renames the map or stops pruning by it would keep
    # revoked partitions' review state in memory (and write tombstones to wrong partitions).
    from faust.stores.memory import Store
    from faust.types import TP

    recheck = (
        "re-check services/cdc_processor/src/cdc_processor/writeback.py against faust's "
        "stores/memory.py (Store._key_partition, on_recovery_completed)"
    )
    store = Store.__new__(Store)
    Store.__post_init__(store)
    store.data.update({"kept": 1, "moved": 2})
    store._key_partition.update({"kept": 0, "moved": 1})
    await store.on_recovery_completed({TP("cdc-products-changelog", 0)}, set())
    assert store.data == {"kept": 1}, recheck
    assert dict(store._key_partition) == {"kept": 0}, recheck


def test_faust_leader_topic_is_named_as_cdc_processor_creates_it() -> None:
    # cdc_processor.app.create_topics creates Faust's internal topics itself (declaring is off):
    # the leader assignor's topic name is Faust's own (a private cached_property).
    import faust
    from cdc_processor.app import LEADER_TOPIC_SUFFIX
    from faust.assignor.leader_assignor import LeaderAssignor

    app = faust.App(f"pin-{uuid.uuid4().hex[:6]}", broker="kafka://127.0.0.1:1")
    assert LeaderAssignor(app)._leader_topic_name == f"{app.conf.id}-{LEADER_TOPIC_SUFFIX}", (
        "re-check cdc_processor/app.py internal_topics against faust's "
        "assignor/leader_assignor.py (_leader_topic_name)"
    )
