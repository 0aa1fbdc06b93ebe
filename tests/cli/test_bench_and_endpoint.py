"""``lakelog bench``, and how every command finds (or fails to reach) the service."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from lakelog import Engine, bench
from lakelog.client import Client
from tests.cli.conftest import Run, closed_port, error_line


def test_bench_json_reports_producer_and_consumer_rates_and_deletes_its_topic(
    run: Run, client: Client
) -> None:
    done = run("bench", "--records", "600", "--record-bytes", "512", "--partitions", "2", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["records"], report["record_bytes"], report["partitions"]) == (600, 512, 2)
    producer, consumer = report["producer"], report["consumer"]
    assert producer["records"] == consumer["records"] == 600
    assert producer["bytes"] == consumer["bytes"] == 600 * 512
    for result in (producer, consumer):
        assert result["seconds"] > 0
        assert result["records_per_s"] > 0
        assert result["mib_per_s"] > 0
    assert producer["appends"] >= 1
    assert producer["appends_per_1000"] == producer["appends"] * 1000 / 600
    assert report["topic"].startswith("bench-")
    assert report["topic"] not in client.list_topics()


def test_bench_on_an_existing_topic_prints_a_table_and_keeps_the_topic(
    run: Run, client: Client, topic_name: str
) -> None:
    client.create_topic(topic_name)

    done = run("bench", "--topic", topic_name, "-n", "200", "-s", "100", "--progress")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"bench {topic_name}  1 partition, 200 records of 100 bytes")
    header = lines[1].split()
    assert header[:4] == ["records", "seconds", "records/s", "MiB/s"]
    producer = lines[3].split()
    consumer = lines[4].split()
    assert (producer[0], producer[1], consumer[0], consumer[1]) == (
        "producer", "200", "consumer", "200",
    )  # fmt: skip
    assert "200/200" in done.stderr  # the progress bars
    assert client.describe_topic(topic_name).partitions[0].high_watermark == 200


def test_an_endpoint_nobody_listens_on_gives_one_line_and_exit_1(run: Run) -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    failed = run("topic", "list", endpoint=url)

    assert failed.returncode == 1
    assert failed.stderr == f"error: unavailable: cannot reach {url}: connection refused\n"
    assert failed.stdout == ""


def test_lakelog_endpoint_environment_variable_picks_the_service(
    run: Run, client: Client, endpoint: str, topic_name: str
) -> None:
    # Given no --endpoint but LAKELOG_ENDPOINT naming the dev server
    created = run("topic", "create", topic_name, endpoint=None, env={"LAKELOG_ENDPOINT": endpoint})

    assert created.returncode == 0, created.stderr
    assert topic_name in client.list_topics()

    # And --endpoint wins over the variable
    url = f"http://127.0.0.1:{closed_port()}"
    overridden = run("topic", "list", endpoint=url, env={"LAKELOG_ENDPOINT": endpoint})
    assert error_line(overridden) == f"error: unavailable: cannot reach {url}: connection refused"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "http://[::1",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:port",
        "http://127.0.0.1:8080?stage=dev",
        "http://127.0.0.1:8080/#docs",
    ],
)
def test_an_endpoint_that_is_not_a_url_is_a_usage_error(run: Run, url: str) -> None:
    failed = run("topic", "list", endpoint=url)

    assert failed.returncode == 2, failed.stderr
    assert f"endpoint {url!r} is not an http(s) URL" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_bench_run_reads_back_only_what_it_produced_on_a_topic_that_has_records(
    client: Client, topic_name: str
) -> None:
    # Given a topic that already holds three records (the SDK in this process, no CLI)
    client.create_topic(topic_name)
    with client.producer() as producer:
        for _ in range(3):
            producer.send(topic_name, value=b"older")

    result = bench.run(client, records=50, record_bytes=10, topic=topic_name)

    assert (result.producer.records, result.consumer.records) == (50, 50)
    assert result.consumer.bytes == 50 * 10
    assert client.describe_topic(topic_name).partitions[0].high_watermark == 53


def test_bench_consumer_gives_up_when_fewer_records_arrive_than_expected(
    client: Client, topic_name: str
) -> None:
    client.create_topic(topic_name)
    with client.producer() as producer:
        producer.send(topic_name, value=b"only one")

    with pytest.raises(bench.BenchTimeoutError, match="read 1 of 5 records"):
        bench.run_consumer(client, topic_name, 5, idle_timeout_s=0.5)


def test_bench_run_measures_an_in_process_client_the_same_way(
    make_engine: Callable[..., Engine],
) -> None:
    # Given a client on the engine itself (moto in this process), as benchmarks/ would use
    direct = Client(transport=make_engine())

    result = bench.run(direct, records=300, record_bytes=64, partitions=2)

    assert result.partitions == 2
    assert result.producer.records == result.consumer.records == 300
    assert result.producer.appends_per_1000 == result.producer.appends * 1000 / 300
    assert result.topic not in direct.list_topics()
