import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from servicekit.partitioner import Murmur2Partitioner, murmur2

# Kafka's own test vectors (org.apache.kafka.common.utils.UtilsTest#testMurmur2), as signed ints.
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected & 0xFFFFFFFF


def test_murmur2_matches_aiokafka_for_every_length_and_tail() -> None:
    rng = random.Random(7)
    for length in range(130):
        for _ in range(25):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafka_murmur2(data), (length, data)


def test_partitioner_picks_the_default_partitioners_partition() -> None:
    rng = random.Random(11)
    ours, reference = Murmur2Partitioner(), DefaultPartitioner()
    for _ in range(3000):
        key = rng.randbytes(rng.randint(0, 48))
        partitions = list(range(rng.randint(1, 16)))
        assert ours(key, partitions, partitions) == reference(key, partitions, partitions)


def test_unkeyed_records_go_to_an_available_partition() -> None:
    ours = Murmur2Partitioner()
    assert {ours(None, [0, 1, 2], [2]) for _ in range(50)} == {2}
    assert {ours(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}
