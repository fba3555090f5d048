"""``flytenotify check-config --connect`` against the Pub/Sub emulator and moto."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from flytenotify.cli import main
from tests.cloud.brokers import PROJECT, PubSub, SnsSqs


async def _subscription(host: str) -> tuple[str, str]:
    admin = PubSub(host)
    try:
        return await admin.topic_with_subscription()
    finally:
        await admin.close()


def check(tmp_path: Path, section: str) -> tuple[int, str]:
    config = tmp_path / "flytenotify.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n{section}')
    result = CliRunner().invoke(main, ["check-config", str(config), "--connect"])
    return result.exit_code, result.output


def test_check_config_names_the_subscription_and_its_topic(pubsub_env: str, tmp_path: Path) -> None:
    topic, subscription = asyncio.run(_subscription(pubsub_env))
    code, output = check(
        tmp_path, f'[intake.gcp]\nproject_id = "{PROJECT}"\nsubscription = "{subscription}"\n'
    )
    assert code == 0, output
    assert f"intake gcp: Pub/Sub subscription projects/{PROJECT}/subscriptions/" in output
    assert f"on topic {topic}" in output


def test_check_config_says_which_subscription_is_missing(pubsub_env: str, tmp_path: Path) -> None:
    code, output = check(
        tmp_path, f'[intake.gcp]\nproject_id = "{PROJECT}"\nsubscription = "gone"\n'
    )
    assert code == 1
    assert (
        f"intake gcp: cannot connect: Pub/Sub subscription projects/{PROJECT}/subscriptions/gone "
        "does not exist"
    ) in output


def test_check_config_reads_the_queue(aws_env: str, tmp_path: Path) -> None:
    queue = asyncio.run(SnsSqs(aws_env).queue(visibility_timeout=45))
    code, output = check(
        tmp_path, f'[intake.aws]\nqueue_url = "{queue}"\nendpoint_url = "{aws_env}"\n'
    )
    assert code == 0, output
    assert f"intake aws: SQS queue {queue}: 0 messages waiting, visibility timeout 45 s" in output


def test_check_config_says_which_queue_is_missing(aws_env: str, tmp_path: Path) -> None:
    queue = f"{aws_env}/123456789012/gone"
    code, output = check(
        tmp_path, f'[intake.aws]\nqueue_url = "{queue}"\nendpoint_url = "{aws_env}"\n'
    )
    assert code == 1
    assert f"intake aws: cannot connect: SQS queue {queue} does not exist" in output
